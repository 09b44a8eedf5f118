"""The lab server's first schema: projects, devices, enrollments, operations, blobs, uploads,
models and jobs. Frozen: later changes go in new revisions."""

import sqlalchemy as sa
from alembic import op

revision = "0001_lab_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("created", sa.String(40), nullable=False),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("token_hash", sa.String(64), unique=True),
        sa.Column("enrolled", sa.String(40), nullable=False),
        sa.Column("last_seen", sa.String(40)),
        sa.Column("revoked", sa.String(40)),
    )
    op.create_table(
        "enrollments",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("expires", sa.String(40), nullable=False),
        sa.Column("used", sa.String(40)),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id")),
    )
    op.create_table(
        "operations",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("uid", sa.String(64), nullable=False),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ref", sa.String(80), nullable=False),
        sa.Column("image", sa.String(80)),
        sa.Column("parent", sa.String(64)),
        sa.Column("blob", sa.String(64)),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("received", sa.String(40), nullable=False),
        sa.UniqueConstraint("project_id", "uid", name="operations_project_uid"),
    )
    op.create_index("operations_project_seq", "operations", ["project_id", "seq"])
    op.create_index("operations_project_image", "operations", ["project_id", "image"])
    op.create_table(
        "blobs",
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
    )
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("bundle_id", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("pushed", sa.String(40), nullable=False),
        sa.UniqueConstraint("project_id", "sha256", name="models_project_sha"),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("pushed", sa.String(40), nullable=False),
        sa.UniqueConstraint("project_id", "sha256", name="jobs_project_sha"),
    )


def downgrade() -> None:
    for table in ("jobs", "models", "uploads", "blobs", "operations", "enrollments", "devices"):
        op.drop_table(table)
    op.drop_table("projects")
