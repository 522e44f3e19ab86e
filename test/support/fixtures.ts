/** The test directory's healthy account and its password (fixtures from stack/ldap/up.sh, not secrets). */
export const DIRECTORY_USER = 'svcDomainJoin@corp.contoso.test';
export const DIRECTORY_PASSWORD = 'Join-Test-Only-1!';
