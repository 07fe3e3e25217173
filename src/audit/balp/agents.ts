import { isIP } from 'node:net';
import { ROLES, type Coding, type Pattern } from './patterns.ts';

/** Agents are identified by what they are (client, partner, user…) and their id under it. */
export const AGENT_IDS = 'urn:fhir-gateway:agent';

/** Who an entry names (AuditInput['agent']): its counterpart in the event, or this gateway. */
export interface EntryAgent {
  type: string;
  id: string;
  network?: string;
}

/** The gateway that records the log and serves it. */
export interface Observer {
  org: string;
  baseUrl: string;
}

export interface Concept {
  coding: Coding[];
}

interface Reference {
  identifier?: { system: string; value: string };
  display?: string;
}

export interface Agent {
  type: Concept;
  who: Reference;
  requestor: boolean;
  network?: { address: string; type: '1' | '2' | '5' };
  purposeOfUse?: Concept[];
}

/** A person (a named account of the browser pages, or the operating-system user running the CLI), not a system. */
const PERSON = 'user';
/** The entry's agent is this gateway itself. */
const GATEWAY = 'gateway';

/** An agent's network address as R4 types it: 5 URI (a URL), 2 IP address, else 1 machine name. */
export function networkOf(address: string): NonNullable<Agent['network']> {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(address)) return { address, type: '5' };
  return { address, type: isIP(address) ? '2' : '1' };
}

/** This gateway, by its organisation id: AuditEvent.source.observer and its own agent (BALP: the source is an agent). */
export const gatewayReference = (o: Observer): Reference => ({
  identifier: { system: `${AGENT_IDS}:${GATEWAY}`, value: o.org },
  display: o.org,
});

const referenceTo = (a: EntryAgent): Reference => ({ identifier: { system: `${AGENT_IDS}:${a.type}`, value: a.id } });
const concept = (c: Coding): Concept => ({ coding: [c] });
const networkIf = (address: string | undefined) => (address ? { network: networkOf(address) } : {});

/**
 * The agents of one entry under its pattern, and whether both parties the
 * pattern names are there with their network addresses (what the BALP
 * profiles require). The requesting side carries the purpose of use.
 */
export function agentsFor(
  p: Pattern,
  entryAgent: EntryAgent | undefined,
  observer: Observer,
  purposes: Concept[],
): { agents: Agent[]; parties: boolean } {
  const us = { who: gatewayReference(observer), network: networkOf(observer.baseUrl) };
  const other = entryAgent && entryAgent.type !== GATEWAY ? entryAgent : undefined;
  const why = purposes.length ? { purposeOfUse: purposes } : {};
  if (!p.roles) {
    // A plain DICOM event: each agent coded by what it is, the one who asked as requestor.
    const weAsk = p.requester === 'gateway' || !other;
    const agents: Agent[] = other
      ? [
          {
            type: concept(other.type === PERSON ? ROLES.humanUser : ROLES.application),
            who: referenceTo(other),
            requestor: !weAsk,
            ...networkIf(other.network),
            ...(weAsk ? {} : why),
          },
        ]
      : [];
    agents.push({ type: concept(ROLES.application), ...us, requestor: weAsk, ...(weAsk ? why : {}) });
    return { agents, parties: false };
  }
  const { requester, responder, person } = p.roles;
  const agents: Agent[] = [];
  const parties = other !== undefined;
  if (p.requester === 'gateway') agents.push({ type: concept(requester), ...us, requestor: true, ...why });
  else if (other?.type === PERSON) {
    // A person asks through a browser: the browser is the requesting system, the person the user behind it.
    if (other.network)
      agents.push({
        type: concept(requester),
        who: { display: 'web browser' },
        requestor: false,
        ...networkIf(other.network),
      });
    agents.push({ type: concept(person), who: referenceTo(other), requestor: true, ...why });
  } else if (other)
    agents.push({
      type: concept(requester),
      who: referenceTo(other),
      requestor: true,
      ...networkIf(other.network),
      ...why,
    });
  if (p.requester === 'agent') agents.push({ type: concept(responder), ...us, requestor: false });
  else if (other)
    agents.push({ type: concept(responder), who: referenceTo(other), requestor: false, ...networkIf(other.network) });
  return { agents, parties: parties && other?.network !== undefined };
}
