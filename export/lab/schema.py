"""The lab server's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Changes go through a new Alembic revision in `migrations/versions/`, never by editing one.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created", String(40), nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("role", String(20), nullable=False),  # tablet | workstation
    Column("token_hash", String(64), unique=True),  # sha256 of a 256-bit secret; NULL until used
    Column("enrolled", String(40), nullable=False),
    Column("last_seen", String(40)),
    Column("revoked", String(40)),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("role", String(20), nullable=False),
    Column("name", String(100), nullable=False),
    Column("created", String(40), nullable=False),
    Column("expires", String(40), nullable=False),
    Column("used", String(40)),
    Column("device_id", Integer, ForeignKey("devices.id")),
)

operations = Table(
    "operations",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # the server's order
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("uid", String(64), nullable=False),
    Column("device_id", Integer, ForeignKey("devices.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("ref", String(80), nullable=False),
    Column("image", String(80)),  # label.saved: the image it labels (sha256:page)
    Column("parent", String(64)),  # label.saved: the parent version's uid
    Column("blob", String(64)),
    Column("payload", Text, nullable=False),
    Column("received", String(40), nullable=False),
    UniqueConstraint("project_id", "uid", name="operations_project_uid"),
)
Index("operations_project_seq", operations.c.project_id, operations.c.seq)
Index("operations_project_image", operations.c.project_id, operations.c.image)

blobs = Table(
    "blobs",
    metadata,
    Column("project_id", Integer, ForeignKey("projects.id"), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created", String(40), nullable=False),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("device_id", Integer, ForeignKey("devices.id"), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("length", BigInteger, nullable=False),
    Column("created", String(40), nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("bundle_id", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("summary", Text, nullable=False),  # JSON: roles, names, metrics
    Column("device_id", Integer, ForeignKey("devices.id"), nullable=False),
    Column("pushed", String(40), nullable=False),
    UniqueConstraint("project_id", "sha256", name="models_project_sha"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("device_id", Integer, ForeignKey("devices.id"), nullable=False),
    Column("pushed", String(40), nullable=False),
    UniqueConstraint("project_id", "sha256", name="jobs_project_sha"),
)
