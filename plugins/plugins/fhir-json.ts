import fp from 'fastify-plugin';
import { decodeJsonBody, parseFhirJson } from '../../src/fhir/json.ts';

/** application/fhir+json (and plain JSON) bodies, parsed with depth and prototype-pollution guards. */
export default fp(
  async (app) => {
    app.removeContentTypeParser(['application/json']);
    app.addContentTypeParser(
      ['application/fhir+json', 'application/json'],
      { parseAs: 'buffer' },
      (_req, body, done) => {
        try {
          done(null, parseFhirJson(decodeJsonBody(body as Buffer), app.config.jsonMaxDepth));
        } catch (err) {
          done(err as Error, undefined);
        }
      },
    );
  },
  { name: 'fhir-json', dependencies: ['config'], fastify: '5.x' },
);
