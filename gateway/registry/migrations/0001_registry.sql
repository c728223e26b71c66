-- Registry schema, version 1: the catalogue (OPDs, Layanan, applications, grants), operator
-- accounts with their roles, and the signed catalogue revisions.
CREATE TABLE opd (
    code        TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    domain      TEXT NOT NULL
);

CREATE TABLE layanan (
    id             TEXT PRIMARY KEY NOT NULL,
    owner_opd      TEXT NOT NULL REFERENCES opd(code),
    name           TEXT NOT NULL,
    version        TEXT NOT NULL,
    classification TEXT NOT NULL,
    exposure       TEXT NOT NULL,
    state          TEXT NOT NULL,
    submitted_by   TEXT NOT NULL,
    spec           TEXT NOT NULL,
    upstream       TEXT NOT NULL,
    approval       TEXT
);
CREATE INDEX layanan_owner ON layanan(owner_opd);

CREATE TABLE application (
    id          TEXT PRIMARY KEY NOT NULL,
    owner_opd   TEXT NOT NULL REFERENCES opd(code),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    credentials TEXT NOT NULL
);
CREATE INDEX application_owner ON application(owner_opd);

CREATE TABLE grant_ (
    id           TEXT PRIMARY KEY NOT NULL,
    application  TEXT NOT NULL REFERENCES application(id),
    layanan      TEXT NOT NULL REFERENCES layanan(id),
    tujuan       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    revoked      INTEGER NOT NULL,
    body         TEXT NOT NULL
);
CREATE INDEX grant_layanan ON grant_(layanan);

CREATE TABLE operator (
    username      TEXT PRIMARY KEY NOT NULL,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled      INTEGER NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE operator_role (
    username     TEXT NOT NULL REFERENCES operator(username) ON DELETE CASCADE,
    role         TEXT NOT NULL,
    opd          TEXT NOT NULL,
    valid_from   TEXT,
    valid_until  TEXT,
    PRIMARY KEY (username, role, opd)
);

CREATE TABLE revision (
    id                  INTEGER PRIMARY KEY NOT NULL,
    created_at          TEXT NOT NULL,
    actor               TEXT NOT NULL,
    action              TEXT NOT NULL,
    body                TEXT NOT NULL,
    sha256              TEXT NOT NULL,
    signature           BLOB NOT NULL,
    signature_algorithm TEXT NOT NULL,
    signer_certificate  BLOB NOT NULL
);

CREATE TABLE api_token (
    sha256      TEXT PRIMARY KEY NOT NULL,
    username    TEXT NOT NULL REFERENCES operator(username) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
