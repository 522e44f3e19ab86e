import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Operator-facing search attributes. Never put secret material here: they are not encoded. */
export const TenantIdKey = defineSearchAttributeKey('TenantId', SearchAttributeType.KEYWORD);
export const AncIdKey = defineSearchAttributeKey('AncId', SearchAttributeType.KEYWORD);
export const AncStateKey = defineSearchAttributeKey('AncState', SearchAttributeType.KEYWORD);
export const HealthStatusKey = defineSearchAttributeKey('HealthStatus', SearchAttributeType.KEYWORD);
export const TenantStateKey = defineSearchAttributeKey('TenantState', SearchAttributeType.KEYWORD);
export const PurgeAtKey = defineSearchAttributeKey('PurgeAt', SearchAttributeType.DATETIME);

/** Name → type, for registering them with a Temporal namespace. */
export const SEARCH_ATTRIBUTES = {
  TenantId: 'Keyword',
  AncId: 'Keyword',
  AncState: 'Keyword',
  HealthStatus: 'Keyword',
  TenantState: 'Keyword',
  PurgeAt: 'Datetime',
} as const;
