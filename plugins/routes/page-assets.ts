import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { GatewayError } from '../../src/errors.ts';
import { publicAccess } from './audit-guard.ts';
import { PAGE_SECURITY_HEADERS } from './page-headers.ts';

export const SCRIPT_TYPE = 'text/javascript; charset=utf-8';
export const STYLE_TYPE = 'text/css; charset=utf-8';

/** A page's static files by name, read once on first use (they ship with the code and never change while it runs). */
export function cachedFiles(read: (name: string) => string): (name: string) => string {
  const files = new Map<string, string>();
  return (name) => {
    let text = files.get(name);
    if (text === undefined) files.set(name, (text = read(name)));
    return text;
  };
}

/** The files of one folder, read as they are. */
export function folderFiles(dir: string): (name: string) => string {
  return cachedFiles((name) => readFileSync(join(dir, name), 'utf8'));
}

/** GET `{prefix}/:file` for exactly the listed files (name → content type), with the pages' headers; any other name is 404. */
export function serveAssets(
  app: FastifyInstance,
  prefix: string,
  types: Record<string, string>,
  load: (name: string) => string,
): void {
  app.get<{ Params: { file: string } }>(`${prefix}/:file`, { preHandler: publicAccess }, async (req, reply) => {
    const type = Object.hasOwn(types, req.params.file) ? types[req.params.file] : undefined;
    if (!type) throw new GatewayError('NOT_FOUND', 'no such file');
    return reply.headers(PAGE_SECURITY_HEADERS).type(type).send(load(req.params.file));
  });
}

const SHARED_DIR = join(import.meta.dirname, '..', '..', 'src', 'ui');

/** The look and the script helpers every browser page shares, at /ui/. */
export function sharedPageAssets(app: FastifyInstance): void {
  serveAssets(app, '/ui', { 'page.css': STYLE_TYPE, 'page.js': SCRIPT_TYPE }, folderFiles(SHARED_DIR));
}
