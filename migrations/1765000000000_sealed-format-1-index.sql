-- Up Migration

-- Credentials still in sealed format 1 (its size reveals the password's length to within 16 bytes).
-- The format version is the first byte of the sealed value; the rotation finds these rows through
-- this index, tenant by tenant, and re-seals them to format 2. Once none are left the index is empty.
CREATE INDEX anc_credentials_sealed_format_1 ON anc_credentials (tenant_id) WHERE get_byte(sealed, 0) = 1;

-- Down Migration
DROP INDEX IF EXISTS anc_credentials_sealed_format_1;
