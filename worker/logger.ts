import pino from 'pino';

/**
 * Structured JSON logs, ids first. Secrets never reach a log call; the redaction list is a second
 * line of defence for fields that could carry them.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): pino.Logger {
  return pino(
    {
      level,
      base: { service: 'anc-credential-service' },
      redact: {
        paths: [
          'password',
          '*.password',
          'passwordEnvelope',
          '*.passwordEnvelope',
          'tenantKey',
          '*.tenantKey',
          'key',
          'privateKey',
        ],
        censor: '[redacted]',
      },
    },
    destination,
  );
}
