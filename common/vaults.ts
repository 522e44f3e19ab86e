/**
 * Vault ids, shared by workflows, activities and the client SDK (no I/O, nothing secret). A vault is
 * one Azure Key Vault holding one KEK; tenants are spread over the configured vaults, each tenant on
 * exactly one (`tenants.vault_id`).
 */

/** The vault every tenant was on before there could be several, and the default's id. */
export const PRIMARY_VAULT_ID = 'primary';

/** What a vault id looks like: lower-case letters, digits and dashes, 1 to 20 characters. */
export const VAULT_ID_PATTERN = /^[a-z0-9-]{1,20}$/;

export function isVaultId(value: unknown): value is string {
  return typeof value === 'string' && VAULT_ID_PATTERN.test(value);
}
