-- Up Migration

-- Identifiers are validated by the service too; the checks here make bad rows impossible even for
-- a hand-written statement.
CREATE DOMAIN entity_id AS text CHECK (VALUE ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$');

CREATE TABLE tenants (
  tenant_id       entity_id PRIMARY KEY,
  state           text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'deactivated', 'purged')),
  deactivated_at  timestamptz,
  purge_at        timestamptz,
  purged_at       timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  -- A deactivated tenant always knows when it will be purged; an active one has no such dates.
  CONSTRAINT tenants_deactivation_dates CHECK (
    (state = 'active' AND deactivated_at IS NULL AND purge_at IS NULL AND purged_at IS NULL)
    OR (state = 'deactivated' AND deactivated_at IS NOT NULL AND purge_at IS NOT NULL AND purge_at > deactivated_at
        AND purged_at IS NULL)
    OR (state = 'purged' AND purged_at IS NOT NULL)
  )
);

-- Per-tenant symmetric keys, stored only wrapped by a version of the key-encryption key (KEK).
CREATE TABLE tenant_keys (
  tenant_id    entity_id NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
  version      integer NOT NULL CHECK (version > 0),
  state        text NOT NULL CHECK (state IN ('active', 'retiring')),
  wrapped_key  bytea NOT NULL CHECK (octet_length(wrapped_key) BETWEEN 128 AND 1024),
  kek_id       text NOT NULL CHECK (kek_id <> ''),
  kek_version  text NOT NULL CHECK (kek_version <> ''),
  created_at   timestamptz NOT NULL,
  expires_at   timestamptz NOT NULL,
  rewrapped_at timestamptz,
  PRIMARY KEY (tenant_id, version),
  CONSTRAINT tenant_keys_expiry_after_creation CHECK (expires_at > created_at)
);
-- At most one key a tenant seals new credentials with.
CREATE UNIQUE INDEX tenant_keys_one_active ON tenant_keys (tenant_id) WHERE state = 'active';
CREATE INDEX tenant_keys_by_kek_version ON tenant_keys (kek_version);

CREATE TABLE ancs (
  tenant_id            entity_id NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
  anc_id               entity_id NOT NULL,
  display_name         text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 256),
  ad_domain_name       text NOT NULL CHECK (char_length(ad_domain_name) BETWEEN 1 AND 255),
  organizational_unit  text CHECK (char_length(organizational_unit) BETWEEN 1 AND 2048),
  ad_username          text NOT NULL CHECK (ad_username ~ '^[^@\s]+@[^@\s]+$'),
  state                text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'deactivated')),
  credential_version   integer NOT NULL CHECK (credential_version > 0),
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, anc_id)
);

-- Sealed credential versions. The sealed blob is the versioned encrypt-then-MAC format; the key
-- version it names must exist, so a tenant key still in use can never be destroyed.
CREATE TABLE anc_credentials (
  tenant_id           entity_id NOT NULL,
  anc_id              entity_id NOT NULL,
  version             integer NOT NULL CHECK (version > 0),
  tenant_key_version  integer NOT NULL,
  sealed              bytea NOT NULL CHECK (octet_length(sealed) >= 69),
  operation_id        text NOT NULL UNIQUE CHECK (operation_id <> ''),
  created_at          timestamptz NOT NULL DEFAULT now(),
  resealed_at         timestamptz,
  PRIMARY KEY (tenant_id, anc_id, version),
  FOREIGN KEY (tenant_id, anc_id) REFERENCES ancs (tenant_id, anc_id) ON DELETE CASCADE,
  FOREIGN KEY (tenant_id, tenant_key_version) REFERENCES tenant_keys (tenant_id, version)
);
CREATE INDEX anc_credentials_by_key ON anc_credentials (tenant_id, tenant_key_version);

-- The ANC row names its current credential version, which must exist. Deferred so the ANC and its
-- first credential are inserted in one transaction.
ALTER TABLE ancs ADD CONSTRAINT ancs_current_credential
  FOREIGN KEY (tenant_id, anc_id, credential_version)
  REFERENCES anc_credentials (tenant_id, anc_id, version) DEFERRABLE INITIALLY DEFERRED;

-- Client envelopes are single-use: one envelope id, one operation.
CREATE TABLE used_envelopes (
  envelope_id   text PRIMARY KEY CHECK (envelope_id <> ''),
  tenant_id     entity_id NOT NULL,
  anc_id        entity_id NOT NULL,
  operation_id  text NOT NULL,
  used_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX used_envelopes_by_tenant ON used_envelopes (tenant_id);

CREATE TABLE health_checks (
  id                  bigserial PRIMARY KEY,
  tenant_id           entity_id NOT NULL,
  anc_id              entity_id NOT NULL,
  check_id            text NOT NULL UNIQUE CHECK (check_id <> ''),
  status              text NOT NULL CHECK (status IN ('passed', 'failed', 'warning')),
  error_type          text,
  message             text,
  credential_version  integer NOT NULL,
  started_at          timestamptz NOT NULL,
  finished_at         timestamptz NOT NULL,
  duration_ms         integer NOT NULL CHECK (duration_ms >= 0),
  FOREIGN KEY (tenant_id, anc_id) REFERENCES ancs (tenant_id, anc_id) ON DELETE CASCADE,
  CONSTRAINT health_checks_error_when_not_passed CHECK ((status = 'passed') = (error_type IS NULL))
);
CREATE INDEX health_checks_latest ON health_checks (tenant_id, anc_id, finished_at DESC);

-- Append-only, tamper-evident audit log. Each record carries an HMAC over its own content and the
-- previous record's MAC. It names tenants and ANCs but never holds secret material, and it outlives
-- the rows it describes.
CREATE TABLE audit_log (
  seq          bigint PRIMARY KEY,
  event_key    text NOT NULL UNIQUE CHECK (event_key <> ''),
  at           timestamptz NOT NULL,
  event        text NOT NULL,
  tenant_id    text,
  anc_id       text,
  actor        text NOT NULL,
  workflow_id  text,
  outcome      text NOT NULL CHECK (outcome IN ('success', 'failure')),
  details      jsonb NOT NULL DEFAULT '{}'::jsonb,
  prev_mac     bytea NOT NULL,
  mac          bytea NOT NULL CHECK (octet_length(mac) = 32)
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, seq);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Down Migration
DROP TABLE IF EXISTS audit_log;
DROP FUNCTION IF EXISTS audit_log_append_only();
DROP TABLE IF EXISTS health_checks;
DROP TABLE IF EXISTS used_envelopes;
ALTER TABLE IF EXISTS ancs DROP CONSTRAINT IF EXISTS ancs_current_credential;
DROP TABLE IF EXISTS anc_credentials;
DROP TABLE IF EXISTS ancs;
DROP TABLE IF EXISTS tenant_keys;
DROP TABLE IF EXISTS tenants;
DROP DOMAIN IF EXISTS entity_id;
