import { createHash } from 'node:crypto';
import { makeHasher, type Hasher } from './verifier/merkle.ts';

/** RFC 6962 hasher on node:crypto (fast path for the server, CLI and tests). */
export const nodeHasher: Hasher = makeHasher((data) => createHash('sha256').update(data).digest());
