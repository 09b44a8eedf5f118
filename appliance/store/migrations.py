"""Named schema migrations, applied in order, each in one transaction with its record.

Append new migrations at the end; never edit one that has shipped. A project whose
`migrations` table names a migration this code does not know was written by a newer version
and is refused untouched.
"""

from __future__ import annotations

from appliance.store import jobs

__all__ = ["INITIAL", "MIGRATIONS"]

INITIAL = """
CREATE TABLE classes (
    id INTEGER PRIMARY KEY,             -- class id as used in label class tables (1..)
    name TEXT NOT NULL UNIQUE,
    color TEXT
);
CREATE TABLE images (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL,               -- of the original file's bytes
    page INTEGER,                       -- frame of a multi-page TIFF, NULL for single images
    name TEXT NOT NULL,                 -- original file name (with page suffix for TIFF frames)
    blob TEXT NOT NULL,                 -- path of the stored original, relative to the project
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    dtype TEXT NOT NULL,
    sequence TEXT,                      -- folder or multi-page file the image belongs to
    frame INTEGER,                      -- position in its sequence (natural sort order)
    cherry_picked INTEGER NOT NULL DEFAULT 0,
    source_path TEXT,
    added TEXT NOT NULL,
    UNIQUE (sha256, page)
);
CREATE UNIQUE INDEX images_sha_single ON images (sha256) WHERE page IS NULL;
CREATE INDEX images_sequence ON images (sequence, frame);
CREATE TABLE annotators (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE labels (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,           -- global id, makes sync idempotent
    image_id INTEGER NOT NULL REFERENCES images (id),
    parent_id INTEGER REFERENCES labels (id),
    author TEXT NOT NULL,
    source TEXT NOT NULL
        CHECK (source IN ('manual', 'prelabel', 'upgrade', 'postprocess', 'import')),
    created TEXT NOT NULL,
    seconds_spent REAL NOT NULL DEFAULT 0,
    coarse INTEGER NOT NULL DEFAULT 0,
    reviewed INTEGER NOT NULL DEFAULT 0,
    n_instances INTEGER NOT NULL,
    instances BLOB NOT NULL,            -- appliance.labels.encode_instances
    classes TEXT NOT NULL               -- JSON {instance id: class id}
);
CREATE INDEX labels_image ON labels (image_id, id);
CREATE TRIGGER labels_append_only_update BEFORE UPDATE OF instances, classes, image_id, parent_id,
    author, source, created ON labels
BEGIN SELECT RAISE(ABORT, 'label versions are append-only'); END;
CREATE TRIGGER labels_append_only_delete BEFORE DELETE ON labels
BEGIN SELECT RAISE(ABORT, 'label versions are append-only'); END;
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    image_id INTEGER REFERENCES images (id),
    annotator TEXT,
    kind TEXT NOT NULL,                 -- opened, saved, skipped, ...
    at TEXT NOT NULL,
    seconds REAL,
    detail TEXT
);
CREATE INDEX events_image ON events (image_id);
CREATE TABLE models (
    id TEXT PRIMARY KEY,
    bundle_id TEXT NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,                 -- relative to the project root
    sha256 TEXT NOT NULL,
    contract TEXT NOT NULL,
    metrics TEXT NOT NULL,
    job_id TEXT,
    installed TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE controls (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images (id),
    kind TEXT NOT NULL,                 -- gold, synthetic, planted
    truth BLOB,
    truth_classes TEXT,
    detail TEXT,
    created TEXT NOT NULL
);
CREATE INDEX controls_image ON controls (image_id);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    created TEXT NOT NULL,
    sent TEXT
);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL                 -- JSON
);
CREATE TABLE features (
    image_id INTEGER PRIMARY KEY REFERENCES images (id),
    version TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE TABLE uncertainty (
    image_id INTEGER NOT NULL REFERENCES images (id),
    model_id TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (image_id, model_id)
);
"""

# Sync (appliance.store.oplog): every change as an operation with a device-made id. `outbox`
# (0001) lists the local operations the lab server has not acknowledged yet.
LAB_OPLOG = """
CREATE TABLE operations (
    seq INTEGER PRIMARY KEY,            -- order on this tablet (local and pulled alike)
    uid TEXT NOT NULL UNIQUE,           -- made on the device that did the change
    kind TEXT NOT NULL,                 -- image.added, label.saved, control.scored, model.activated
    ref TEXT NOT NULL,                  -- what it is about: label uid, image sha256:page, model id
    payload TEXT NOT NULL,              -- JSON
    blob TEXT,                          -- sha256 of a file the operation needs, or NULL
    origin TEXT NOT NULL CHECK (origin IN ('local', 'server')),
    recorded TEXT NOT NULL              -- this device's clock; informative only, never ordered by
);
CREATE INDEX operations_ref ON operations (kind, ref);
CREATE INDEX outbox_pending ON outbox (sent, id);
CREATE TABLE sync_state (
    key TEXT PRIMARY KEY,               -- server, token, checkpoint, last_success, last_error
    value TEXT NOT NULL
);
CREATE TABLE sync_uploads (
    sha256 TEXT PRIMARY KEY,            -- a blob whose resumable upload has started
    url TEXT NOT NULL,                  -- the server's upload resource (tus)
    created TEXT NOT NULL
);
"""

# Quality supervision (appliance.store.controls): planted pre-labels, per-save scores, running
# annotator scores, installed control bundles.
SUPERVISION = """
ALTER TABLE controls ADD COLUMN prelabel BLOB;      -- planted pre-label (planted controls only)
ALTER TABLE controls ADD COLUMN errors TEXT;        -- JSON list of the planted errors
CREATE TABLE control_scores (
    id INTEGER PRIMARY KEY,
    control_id INTEGER NOT NULL REFERENCES controls (id),
    label_id INTEGER NOT NULL UNIQUE REFERENCES labels (id),
    annotator TEXT NOT NULL,
    scored TEXT NOT NULL,
    seconds REAL NOT NULL,
    n_truth INTEGER NOT NULL,
    n_label INTEGER NOT NULL,
    matched INTEGER NOT NULL,
    class_correct INTEGER NOT NULL,
    dice REAL NOT NULL,
    instance_f1 REAL NOT NULL,
    boundary_f1 REAL NOT NULL,
    planted TEXT NOT NULL               -- JSON {kind: [caught, planted]}
);
CREATE INDEX control_scores_annotator ON control_scores (annotator, id);
ALTER TABLE annotators ADD COLUMN n_controls INTEGER NOT NULL DEFAULT 0;
ALTER TABLE annotators ADD COLUMN scores TEXT;      -- JSON: running scores, 95 % intervals
ALTER TABLE annotators ADD COLUMN scores_updated TEXT;
CREATE TABLE control_bundles (
    id TEXT PRIMARY KEY,
    installed TEXT NOT NULL,
    controls INTEGER NOT NULL
);
"""

# Which lab device made each pulled operation (NULL: this tablet's own): versions of one image
# from two devices that nobody merged are a conflict (appliance.store.conflicts).
SYNC_DEVICE = "ALTER TABLE operations ADD COLUMN device INTEGER;"

# Who signed each installed model bundle (a lab key id); NULL: installed with
# --allow-unsigned, or before bundles were signed.
MODEL_SIGNER = "ALTER TABLE models ADD COLUMN signer TEXT;"

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_initial", INITIAL),
    ("0002_lab", LAB_OPLOG),
    jobs.MIGRATION,
    ("0004_supervision", SUPERVISION),
    ("0005_sync_device", SYNC_DEVICE),
    ("0006_model_signer", MODEL_SIGNER),
]
