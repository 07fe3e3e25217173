import type { PatternName } from './balp/patterns.ts';

/** FHIR AuditEvent.outcome: 0 success, 4 minor, 8 serious, 12 major failure. */
export type AuditOutcome = 'success' | 'minor-failure' | 'serious-failure' | 'major-failure';

interface AuditEventSpec {
  /** What happened, in one sentence for the compliance officer. */
  description: string;
  /** The outcomes an entry of this type can carry. */
  outcome: readonly AuditOutcome[];
  /** Who records it: the code path that appends it. */
  recordedBy: string;
  /** The IHE BALP pattern its AuditEvent follows (src/audit/balp/patterns.ts), or the plain DICOM event it is. */
  balp: PatternName;
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
    balp: 'Create',
  },
  'intake.refused': {
    description: 'A submission was refused before anything was stored (bad input, unknown recipient, size).',
    outcome: ['minor-failure'],
    recordedBy: 'outbound intake',
    balp: 'Create',
  },
  'exchange.signed': {
    description: 'The gateway signed the content for one delivery with its HSM signing key.',
    outcome: ['success'],
    recordedBy: 'outbound intake (bundle and imaging)',
    balp: 'ExportStep',
  },
  'exchange.sealed': {
    description: "The signed content was encrypted to one recipient's published key.",
    outcome: ['success'],
    recordedBy: 'outbound intake (bundle and imaging)',
    balp: 'Encrypt',
  },
  'delivery.attempt': {
    description: "One attempt to transmit a delivery to the partner, with the partner's answer.",
    outcome: ['success', 'minor-failure'],
    recordedBy: 'delivery worker (attempt ledger)',
    balp: 'DisclosureSource',
  },
  'delivery.receipt': {
    description: "The partner's signed receipt for a delivery was verified and stored.",
    outcome: ['success'],
    recordedBy: 'delivery worker (attempt ledger)',
    balp: 'ExportStep',
  },
  'delivery.failed': {
    description: 'A delivery gave up: a permanent refusal or the retry budget spent.',
    outcome: ['serious-failure'],
    recordedBy: 'delivery worker (attempt ledger)',
    balp: 'ExportStep',
  },
  'delivery.processed': {
    description:
      "The partner's signed processed receipt for a delivery was verified and stored: the partner's EHR has taken it in (acknowledged it or accepted it when forwarded).",
    outcome: ['success'],
    recordedBy: 'processed receipt route (POST /inbox/processed)',
    balp: 'ImportStep',
  },
  'delivery.response': {
    description:
      'A response message from the partner (FHIR MessageHeader.response) was received and matched to the delivery it answers; the detail carries the response code.',
    outcome: ['success'],
    recordedBy: 'inbound receive, with the outbound response correlation',
    balp: 'ImportStep',
  },
  'processed-receipt.refused': {
    description:
      'A processed receipt from a partner was refused (signature, key, claims, or a delivery it names that was never sent to that partner).',
    outcome: ['minor-failure'],
    recordedBy: 'processed receipt route (POST /inbox/processed)',
    balp: 'ImportStep',
  },
  'delivery.retried': {
    description: 'An operator re-queued a failed delivery.',
    outcome: ['success'],
    recordedBy: 'delivery admin (API, CLI and console)',
    balp: 'ApplicationActivity',
  },
  'inbox.accepted': {
    description:
      'A partner delivery was decrypted, verified, stored and receipted; for a bundle, detail.protocol says which protocol version (2: hybrid envelope, dual-signed, senderPqKid) it came in.',
    outcome: ['success'],
    recordedBy: 'inbound receive (bundle and imaging)',
    balp: 'DisclosureRecipient',
  },
  'inbox.duplicate': {
    description: 'A partner re-sent a delivery already received; the stored receipt was returned again.',
    outcome: ['success'],
    recordedBy: 'inbound receive',
    balp: 'ImportStep',
  },
  'inbox.refused': {
    description:
      'A partner delivery was refused (envelope, signature, key or content checks, or a protocol v1 downgrade or mixed form: PROTOCOL_DOWNGRADE, PROTOCOL_MIXED).',
    outcome: ['minor-failure'],
    recordedBy: 'inbound receive (bundle and imaging), inbox route',
    balp: 'ImportStep',
  },
  'evidence.served': {
    description:
      "A partner's signed evidence request was answered: our newest checkpoint, a consistency proof, and the audit entries and inclusion proofs of the receipts we gave it.",
    outcome: ['success'],
    recordedBy: 'evidence route (receiver)',
    balp: 'Query',
  },
  'evidence.refused': {
    description: 'A partner evidence request was refused (signature, sender, audience, time or shape checks).',
    outcome: ['minor-failure'],
    recordedBy: 'evidence route (receiver)',
    balp: 'AccessDenied',
  },
  'delivery.evidence': {
    description:
      "The partner's audit entry for our receipt, and its inclusion in the partner's signed checkpoint, were verified and kept.",
    outcome: ['success'],
    recordedBy: 'partner evidence check (sender)',
    balp: 'ExportStep',
  },
  'partner-log.checkpoint': {
    description:
      "A newer signed checkpoint of a partner's audit log was verified consistent with the one held before, and kept.",
    outcome: ['success'],
    recordedBy: 'partner evidence check (sender)',
    balp: 'ObservedSecurityConfiguration',
  },
  'partner-log.inconsistent': {
    description:
      "A partner's audit log contradicts what it signed before (a forked, rewritten or shrunken history, or a receipt entry that does not hold): alarmed until an operator clears it.",
    outcome: ['major-failure'],
    recordedBy: 'partner evidence check (sender)',
    balp: 'ObservedSecurityConfiguration',
  },
  'partner-log.cleared': {
    description: "An operator cleared a partner log inconsistency; the partner's next checkpoint is trusted afresh.",
    outcome: ['success'],
    recordedBy: 'partner admin (CLI)',
    balp: 'SecurityConfiguration',
  },
  'inbox.read': {
    description:
      'An EHR client read a received message or its imaging content (minor-failure: retention had purged it, answered 410; serious-failure: it could not be opened).',
    outcome: ['success', 'minor-failure', 'serious-failure'],
    recordedBy: 'inbox read (bundle and imaging content)',
    balp: 'Read',
  },
  'inbox.acknowledged': {
    description: 'An EHR client acknowledged a received message.',
    outcome: ['success'],
    recordedBy: 'inbox read',
    balp: 'Update',
  },
  'inbox.processed': {
    description:
      'The EHR took a received message in (acknowledged it, or accepted it when forwarded): a processed receipt is owed to its sender and queued.',
    outcome: ['success'],
    recordedBy: 'inbox read (acknowledgement), inbox forward worker',
    balp: 'ExportStep',
  },
  'processed-receipt.attempt': {
    description:
      "One attempt to send a processed receipt to the partner that sent the message, with the partner's answer.",
    outcome: ['success', 'minor-failure'],
    recordedBy: 'processed receipt worker',
    balp: 'ExportStep',
  },
  'processed-receipt.failed': {
    description: 'Sending a processed receipt gave up: a permanent refusal, or the retry budget or horizon spent.',
    outcome: ['serious-failure'],
    recordedBy: 'processed receipt worker',
    balp: 'ExportStep',
  },
  'notification.sent': {
    description:
      "An exchange state change (delivered, processed, response received, failed, expired) reached the sending EHR: at its response-url as an id-only response message, or at a subscription's rest-hook as a notification Bundle (also a subscription's handshake or heartbeat).",
    outcome: ['success'],
    recordedBy: 'notification worker',
    balp: 'ExportStep',
  },
  'notification.failed': {
    description:
      'Telling the sending EHR of an exchange state change (or a subscription handshake or heartbeat) gave up: its endpoint refused it, or the retry budget or horizon was spent; a subscription goes to error.',
    outcome: ['serious-failure'],
    recordedBy: 'notification worker',
    balp: 'ExportStep',
  },
  'subscription.created': {
    description:
      'An EHR subscribed to the exchange-state topic (FHIR Subscription, rest-hook): its settings, never content; the handshake follows.',
    outcome: ['success'],
    recordedBy: 'Subscription API',
    balp: 'Create',
  },
  'subscription.updated': {
    description: 'An EHR changed one of its subscriptions (back to requested with a new handshake, or off).',
    outcome: ['success'],
    recordedBy: 'Subscription API',
    balp: 'Update',
  },
  'subscription.deleted': {
    description: 'An EHR ended one of its subscriptions; what was still pending for it is never sent.',
    outcome: ['success'],
    recordedBy: 'Subscription API',
    balp: 'Delete',
  },
  'subscription.refused': {
    description:
      "A Subscription request was refused (unknown topic, a channel or payload the gateway does not offer, a bad endpoint, another client's subscription).",
    outcome: ['minor-failure'],
    recordedBy: 'Subscription API',
    balp: 'Create',
  },
  'content.purged': {
    description:
      'Retention purged sealed content past its retention period (one entry per batch, naming each delivery or inbox message and its digest): the rows keep their ids, digests and receipts, and a read of the content answers 410 Gone.',
    outcome: ['success'],
    recordedBy: 'retention job',
    balp: 'Delete',
  },
  'retention.held': {
    description:
      'An administrator placed a legal hold on an exchange: retention keeps its deliveries and inbox messages until the hold is released.',
    outcome: ['success'],
    recordedBy: 'gateway retention hold',
    balp: 'Update',
  },
  'retention.released': {
    description: 'An administrator released the legal hold of an exchange: retention applies to it again.',
    outcome: ['success'],
    recordedBy: 'gateway retention release',
    balp: 'Update',
  },
  'inbox.forwarded': {
    description: "A received message was forwarded to the EHR's endpoint.",
    outcome: ['success'],
    recordedBy: 'inbox forward worker',
    balp: 'CreateElsewhere',
  },
  'inbox.forward-failed': {
    description: "Forwarding a received message to the EHR's endpoint failed.",
    outcome: ['minor-failure'],
    recordedBy: 'inbox forward worker',
    balp: 'CreateElsewhere',
  },
  'auth.failure': {
    description: 'An authentication failed: missing or invalid token, client assertion, TLS binding or password.',
    outcome: ['minor-failure'],
    recordedBy: 'auth (token endpoint, bearer guard, TLS, audit UI login)',
    balp: 'Authentication',
  },
  'authz.denied': {
    description:
      'An authenticated caller was refused: missing scope, a message not routed to it, a cross-site browser request, or a sign-in still waiting for its second factor or enrolment.',
    outcome: ['minor-failure'],
    recordedBy: 'auth (guard, inbox routing)',
    balp: 'AccessDenied',
  },
  'request.refused': {
    description:
      'A request was refused for an invalid value (an id, date, cursor or other parameter that can name nothing) on a route with no refusal audit of its own.',
    outcome: ['minor-failure'],
    recordedBy: 'refusal audit hook (plugins/refusal-audit.ts)',
    balp: 'ApplicationActivity',
  },
  'auth.token-issued': {
    description: 'An access token was issued to a client.',
    outcome: ['success'],
    recordedBy: 'token endpoint',
    balp: 'GetAccessToken',
  },
  'sso.login': {
    description:
      'A person signed in to the audit UI or the console through the OpenID Connect issuer (single sign-on), with the role the page needs.',
    outcome: ['success'],
    recordedBy: 'single sign-on callback',
    balp: 'Login',
  },
  'sso.refused': {
    description:
      'A single sign-on was refused, no session created; detail.reason says why: the ID token expired (id_token_expired) or names another sign-in, client or issuer (id_token_wrong_nonce, _audience, _issuer), the callback is not the pending sign-in (state_mismatch, no_pending_sign_in), the issuer refused the code, or the person lacks the role the page needs (missing_role_compliance, missing_role_operator).',
    outcome: ['minor-failure'],
    recordedBy: 'single sign-on callback',
    balp: 'Login',
  },
  'sso.backchannel-logout': {
    description:
      "The OpenID Connect issuer signed a person out (back-channel logout): the gateway sessions bound to the issuer session its logout token names ended (by its sid, or all of the subject's when it names only a sub); detail.sessions counts them, and is 0 when none was still open.",
    outcome: ['success'],
    recordedBy: 'single sign-on back-channel logout',
    balp: 'Logout',
  },
  'sso.backchannel-refused': {
    description:
      'A back-channel logout was refused (400 invalid_request) and no session ended; detail.reason says why: the logout token does not verify against the issuer keys (signature_invalid, kid_unknown, alg_not_allowed), is from another issuer or for another client (wrong_issuer, wrong_audience), is too old or expired (iat_too_old, expired), is no logout token (not_a_logout_event, events_missing, nonce_present), names neither sid nor sub, or was already used (jti_replayed).',
    outcome: ['minor-failure'],
    recordedBy: 'single sign-on back-channel logout',
    balp: 'Authentication',
  },
  'compliance.login': {
    description:
      'A person with a local account (compliance officer or operator) signed in to the audit UI or the console: the session is complete, with the factors used (the password, a second factor or a passkey alone).',
    outcome: ['success'],
    recordedBy: 'audit UI sign-in, second-factor step and passkey sign-in',
    balp: 'Login',
  },
  'auth.factor-enrolled': {
    description:
      'A person with a local account enrolled a sign-in factor: a passkey, a TOTP authenticator (after its first code confirmed it) or a new set of recovery codes.',
    outcome: ['success'],
    recordedBy: 'second-factor routes (/auth/mfa)',
    balp: 'UserSecurityAttributes',
  },
  'auth.factor-used': {
    description:
      'A sign-in factor was accepted: the password of an account that still has a second step (second factor or enrolment), a passkey or a TOTP code.',
    outcome: ['success'],
    recordedBy: 'audit UI sign-in, second-factor routes (/auth/mfa)',
    balp: 'Authentication',
  },
  'auth.factor-failed': {
    description:
      'A second factor or passkey was refused: a wrong or reused TOTP code, a wrong recovery code, a passkey assertion that failed (origin, challenge, signature, counter, user verification) or an unknown passkey.',
    outcome: ['minor-failure'],
    recordedBy: 'second-factor routes (/auth/mfa)',
    balp: 'Authentication',
  },
  'auth.factors-reset': {
    description:
      'An administrator removed every second factor of a local account (passkeys, TOTP, recovery codes) and ended its sessions; the person enrols again at the next sign-in.',
    outcome: ['success'],
    recordedBy: 'audit CLI (users reset-factors)',
    balp: 'UserSecurityAttributes',
  },
  'auth.recovery-code-used': {
    description: 'A one-time recovery code stood in for the second factor; it cannot be used again.',
    outcome: ['success'],
    recordedBy: 'second-factor routes (/auth/mfa)',
    balp: 'Authentication',
  },
  'disclosures.queried': {
    description:
      "A person or client asked for a patient's accounting of disclosures, or searched the audit trail by patient identifier; the entry names who asked and the identifier's blind, never the identifier.",
    outcome: ['success'],
    recordedBy: 'accounting of disclosures (audit page, audit API, AuditEvent search)',
    balp: 'Query',
  },
  'compliance.unlocked': {
    description: "An administrator unlocked a compliance officer's account after repeated failed sign-ins.",
    outcome: ['success'],
    recordedBy: 'audit CLI (users unlock)',
    balp: 'UserSecurityAttributes',
  },
  'client.registered': {
    description: 'An EHR client was registered.',
    outcome: ['success'],
    recordedBy: 'client admin (API and CLI)',
    balp: 'Create',
  },
  'client.updated': {
    description: "An EHR client's settings (such as its inbox routing) changed.",
    outcome: ['success'],
    recordedBy: 'client admin (API and CLI)',
    balp: 'Update',
  },
  'client.disabled': {
    description: 'An EHR client was disabled.',
    outcome: ['success'],
    recordedBy: 'client admin (API and CLI)',
    balp: 'Update',
  },
  'client.enabled': {
    description: 'An EHR client was enabled again.',
    outcome: ['success'],
    recordedBy: 'client admin (API and CLI)',
    balp: 'Update',
  },
  'tls.bound': {
    description: "A partner's TLS client certificate was bound to it.",
    outcome: ['success'],
    recordedBy: 'client admin (API and CLI)',
    balp: 'Create',
  },
  'tls.unbound': {
    description: "A partner's TLS client certificate binding was removed.",
    outcome: ['success'],
    recordedBy: 'client admin (API and CLI)',
    balp: 'Delete',
  },
  'partner.added': {
    description: 'A partner organisation was added to the directory.',
    outcome: ['success'],
    recordedBy: 'partner directory',
    balp: 'Create',
  },
  'partner.updated': {
    description: "A partner's directory entry changed.",
    outcome: ['success'],
    recordedBy: 'partner directory',
    balp: 'Update',
  },
  'partner.suspended': {
    description: 'An operator suspended a partner: nothing is sent to it and its deliveries wait until it is resumed.',
    outcome: ['success'],
    recordedBy: 'partner suspension (console and CLI)',
    balp: 'Update',
  },
  'partner.resumed': {
    description: 'An operator resumed a suspended partner; its waiting deliveries were queued again.',
    outcome: ['success'],
    recordedBy: 'partner suspension (console and CLI)',
    balp: 'Update',
  },
  'partner.downgrade-detected': {
    description:
      'A partner once seen with post-quantum keys no longer publishes them: its deliveries sealed as v1 wait, pending, for an operator (PQ_DOWNGRADE=hold).',
    outcome: ['success'],
    recordedBy: 'protocol negotiation at intake',
    balp: 'Update',
  },
  'partner.downgrade-decided': {
    description:
      'Deliveries to a partner without post-quantum keys may go as v1 (allow-v1; waiting ones are queued again) or must wait (hold), decided by an operator or by PQ_DOWNGRADE=allow-v1.',
    outcome: ['success'],
    recordedBy: 'gateway deliveries downgrade (CLI), protocol negotiation at intake',
    balp: 'Update',
  },
  'partner.removed': {
    description: 'A partner organisation was removed from the directory.',
    outcome: ['success'],
    recordedBy: 'partner directory',
    balp: 'Delete',
  },
  'partner-key.first-seen': {
    description: "A key appeared in a partner's published JWKS for the first time.",
    outcome: ['success'],
    recordedBy: 'partner key log',
    balp: 'ObservedSecurityConfiguration',
  },
  'partner-key.changed': {
    description: 'A partner republished a kid with different key material.',
    outcome: ['minor-failure'],
    recordedBy: 'partner key log',
    balp: 'ObservedSecurityConfiguration',
  },
  'partner-key.disappeared': {
    description: "A key left a partner's published JWKS.",
    outcome: ['minor-failure'],
    recordedBy: 'partner key log',
    balp: 'ObservedSecurityConfiguration',
  },
  'key.generated': {
    description: 'The gateway generated a key pair in the HSM.',
    outcome: ['success'],
    recordedBy: 'key rotation',
    balp: 'SecurityConfiguration',
  },
  'key.published': {
    description: "A new gateway public key was published in the gateway's JWKS.",
    outcome: ['success'],
    recordedBy: 'key rotation',
    balp: 'SecurityConfiguration',
  },
  'key.activated': {
    description: 'A gateway key became the active key for its use.',
    outcome: ['success'],
    recordedBy: 'key rotation',
    balp: 'SecurityConfiguration',
  },
  'key.deactivated': {
    description: 'A gateway key stopped being active; its successor took over.',
    outcome: ['success'],
    recordedBy: 'key rotation',
    balp: 'SecurityConfiguration',
  },
  'key.destroyed': {
    description: 'A retired gateway key was destroyed in the HSM.',
    outcome: ['success'],
    recordedBy: 'key rotation',
    balp: 'SecurityConfiguration',
  },
} as const satisfies Record<string, AuditEventSpec>;

export type AuditEventType = keyof typeof AUDIT_EVENTS;
