-- Up Migration

-- The Key Vault a tenant's keys are wrapped by (one of the worker's configured vaults). Chosen when
-- the tenant's first key is generated and changed only by a move, which re-wraps every key of the
-- tenant in the same transaction. Tenants from before there could be several vaults are on the
-- first one, "primary". NULL: not placed yet (no key).
ALTER TABLE tenants ADD COLUMN vault_id text CONSTRAINT tenants_vault_id_format CHECK (vault_id ~ '^[a-z0-9-]{1,20}$');
UPDATE tenants SET vault_id = 'primary';

-- Down Migration
ALTER TABLE tenants DROP COLUMN IF EXISTS vault_id;
