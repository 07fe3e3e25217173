/** FHIR AuditEvent.outcome: 0 success, 4 minor, 8 serious, 12 major failure. */
export type AuditOutcome = 'success' | 'minor-failure' | 'serious-failure' | 'major-failure';

interface AuditEventSpec {
  /** What happened, in one sentence for the compliance officer. */
  description: string;
  /** The outcomes an entry of this type can carry. */
  outcome: readonly AuditOutcome[];
  /** Who records it: the code path that appends it. */
  recordedBy: string;
}

/**
 * Every audit event type the gateway writes, in one place. appendAudit only
 * takes these types (AuditInput.type is AuditEventType), and docs/AUDIT.md's
 * catalogue is generated from this object (npm run docs:audit), so the code,
 * the log and the documentation cannot drift apart.
 */
export const AUDIT_EVENTS = {
  'intake.accepted': {
    description: 'An EHR submitted a FHIR bundle or a DICOM study and the gateway accepted it for its recipients.',
    outcome: ['success'],
    recordedBy: 'outbound intake (bundle and imaging)',
  },
  'intake.refused': {
    description: 'A submission was refused before anything was stored (bad input, unknown recipient, size).',
    outcome: ['minor-failure'],
    recordedBy: 'outbound intake',
  },
  'exchange.signed': {
    description: 'The gateway signed the content for one delivery with its HSM signing key.',
    outcome: ['success'],
    recordedBy: 'outbound intake (bundle and imaging)',
  },
  'exchange.sealed': {
    description: "The signed content was encrypted to one recipient's published key.",
    outcome: ['success'],
    recordedBy: 'outbound intake (bundle and imaging)',
  },
  'delivery.attempt': {
    description: "One attempt to transmit a delivery to the partner, with the partner's answer.",
    outcome: ['success', 'minor-failure'],
    recordedBy: 'delivery worker (attempt ledger)',
  },
  'delivery.receipt': {
    description: "The partner's signed receipt for a delivery was verified and stored.",
    outcome: ['success'],
    recordedBy: 'delivery worker (attempt ledger)',
  },
  'delivery.failed': {
    description: 'A delivery gave up: a permanent refusal or the retry budget spent.',
    outcome: ['serious-failure'],
    recordedBy: 'delivery worker (attempt ledger)',
  },
  'delivery.processed': {
    description:
      "The partner's signed processed receipt for a delivery was verified and stored: the partner's EHR has taken it in (acknowledged it or accepted it when forwarded).",
    outcome: ['success'],
    recordedBy: 'processed receipt route (POST /inbox/processed)',
  },
  'delivery.response': {
    description:
      'A response message from the partner (FHIR MessageHeader.response) was received and matched to the delivery it answers; the detail carries the response code.',
    outcome: ['success'],
    recordedBy: 'inbound receive, with the outbound response correlation',
  },
  'processed-receipt.refused': {
    description:
      'A processed receipt from a partner was refused (signature, key, claims, or a delivery it names that was never sent to that partner).',
    outcome: ['minor-failure'],
    recordedBy: 'processed receipt route (POST /inbox/processed)',
  },
  'delivery.retried': {
    description: 'An operator re-queued a failed delivery.',
    outcome: ['success'],
    recordedBy: 'delivery admin (API, CLI and console)',
  },
  'inbox.accepted': {
    description: 'A partner delivery was decrypted, verified, stored and receipted.',
    outcome: ['success'],
    recordedBy: 'inbound receive (bundle and imaging)',
  },
  'inbox.duplicate': {
    description: 'A partner re-sent a delivery already received; the stored receipt was returned again.',
    outcome: ['success'],
    recordedBy: 'inbound receive',
  },
  'inbox.refused': {
    description: 'A partner delivery was refused (envelope, signature, key or content checks).',
    outcome: ['minor-failure'],
    recordedBy: 'inbound receive (bundle and imaging), inbox route',
  },
  'inbox.read': {
    description:
      'An EHR client read a received message or its imaging content (serious-failure: it could not be opened).',
    outcome: ['success', 'serious-failure'],
    recordedBy: 'inbox read (bundle and imaging content)',
  },
  'inbox.acknowledged': {
    description: 'An EHR client acknowledged a received message.',
    outcome: ['success'],
    recordedBy: 'inbox read',
  },
  'inbox.processed': {
    description:
      'The EHR took a received message in (acknowledged it, or accepted it when forwarded): a processed receipt is owed to its sender and queued.',
    outcome: ['success'],
    recordedBy: 'inbox read (acknowledgement), inbox forward worker',
  },
  'processed-receipt.attempt': {
    description:
      "One attempt to send a processed receipt to the partner that sent the message, with the partner's answer.",
    outcome: ['success', 'minor-failure'],
    recordedBy: 'processed receipt worker',
  },
  'processed-receipt.failed': {
    description: 'Sending a processed receipt gave up: a permanent refusal, or the retry budget or horizon spent.',
    outcome: ['serious-failure'],
    recordedBy: 'processed receipt worker',
  },
  'inbox.forwarded': {
    description: "A received message was forwarded to the EHR's endpoint.",
    outcome: ['success'],
    recordedBy: 'inbox forward worker',
  },
  'inbox.forward-failed': {
    description: "Forwarding a received message to the EHR's endpoint failed.",
    outcome: ['minor-failure'],
    recordedBy: 'inbox forward worker',
  },
  'auth.failure': {
    description: 'An authentication failed: missing or invalid token, client assertion, TLS binding or password.',
    outcome: ['minor-failure'],
    recordedBy: 'auth (token endpoint, bearer guard, TLS, audit UI login)',
  },
  'authz.denied': {
    description: 'An authenticated caller was refused: missing scope or a message not routed to it.',
    outcome: ['minor-failure'],
    recordedBy: 'auth (guard, inbox routing)',
  },
  'request.refused': {
    description:
      'A request was refused for an invalid value (an id, date, cursor or other parameter that can name nothing) on a route with no refusal audit of its own.',
    outcome: ['minor-failure'],
    recordedBy: 'refusal audit hook (plugins/refusal-audit.ts)',
  },
  'auth.token-issued': {
    description: 'An access token was issued to a client.',
    outcome: ['success'],
    recordedBy: 'token endpoint',
  },
  'sso.login': {
    description:
      'A person signed in to the audit UI or the console through the OpenID Connect issuer (single sign-on), with the role the page needs.',
    outcome: ['success'],
    recordedBy: 'single sign-on callback',
  },
  'sso.refused': {
    description:
      'A single sign-on was refused: the ID token or the callback failed validation, or the person lacks the role the page needs.',
    outcome: ['minor-failure'],
    recordedBy: 'single sign-on callback',
  },
  'compliance.login': {
    description:
      'A person with a local account (compliance officer or operator) signed in to the audit UI or the console.',
    outcome: ['success'],
    recordedBy: 'audit UI',
  },
  'compliance.unlocked': {
    description: "An administrator unlocked a compliance officer's account after repeated failed sign-ins.",
    outcome: ['success'],
    recordedBy: 'audit CLI (users unlock)',
  },
  'client.registered': {
    description: 'An EHR client was registered.',
    outcome: ['success'],
    recordedBy: 'client admin (API and CLI)',
  },
  'client.updated': {
    description: "An EHR client's settings (such as its inbox routing) changed.",
    outcome: ['success'],
    recordedBy: 'client admin (API and CLI)',
  },
  'client.disabled': {
    description: 'An EHR client was disabled.',
    outcome: ['success'],
    recordedBy: 'client admin (API and CLI)',
  },
  'client.enabled': {
    description: 'An EHR client was enabled again.',
    outcome: ['success'],
    recordedBy: 'client admin (API and CLI)',
  },
  'tls.bound': {
    description: "A partner's TLS client certificate was bound to it.",
    outcome: ['success'],
    recordedBy: 'client admin (API and CLI)',
  },
  'tls.unbound': {
    description: "A partner's TLS client certificate binding was removed.",
    outcome: ['success'],
    recordedBy: 'client admin (API and CLI)',
  },
  'partner.added': {
    description: 'A partner organisation was added to the directory.',
    outcome: ['success'],
    recordedBy: 'partner directory',
  },
  'partner.updated': {
    description: "A partner's directory entry changed.",
    outcome: ['success'],
    recordedBy: 'partner directory',
  },
  'partner.suspended': {
    description: 'An operator suspended a partner: nothing is sent to it and its deliveries wait until it is resumed.',
    outcome: ['success'],
    recordedBy: 'partner suspension (console and CLI)',
  },
  'partner.resumed': {
    description: 'An operator resumed a suspended partner; its waiting deliveries were queued again.',
    outcome: ['success'],
    recordedBy: 'partner suspension (console and CLI)',
  },
  'partner.removed': {
    description: 'A partner organisation was removed from the directory.',
    outcome: ['success'],
    recordedBy: 'partner directory',
  },
  'partner-key.first-seen': {
    description: "A key appeared in a partner's published JWKS for the first time.",
    outcome: ['success'],
    recordedBy: 'partner key log',
  },
  'partner-key.changed': {
    description: 'A partner republished a kid with different key material.',
    outcome: ['minor-failure'],
    recordedBy: 'partner key log',
  },
  'partner-key.disappeared': {
    description: "A key left a partner's published JWKS.",
    outcome: ['minor-failure'],
    recordedBy: 'partner key log',
  },
  'key.generated': {
    description: 'The gateway generated a key pair in the HSM.',
    outcome: ['success'],
    recordedBy: 'key rotation',
  },
  'key.published': {
    description: "A new gateway public key was published in the gateway's JWKS.",
    outcome: ['success'],
    recordedBy: 'key rotation',
  },
  'key.activated': {
    description: 'A gateway key became the active key for its use.',
    outcome: ['success'],
    recordedBy: 'key rotation',
  },
  'key.deactivated': {
    description: 'A gateway key stopped being active; its successor took over.',
    outcome: ['success'],
    recordedBy: 'key rotation',
  },
  'key.destroyed': {
    description: 'A retired gateway key was destroyed in the HSM.',
    outcome: ['success'],
    recordedBy: 'key rotation',
  },
} as const satisfies Record<string, AuditEventSpec>;

export type AuditEventType = keyof typeof AUDIT_EVENTS;
