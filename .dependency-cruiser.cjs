/** Layers: bin -> plugins -> src -> hsm, one way. Checked by `npm test`. */
module.exports = {
  forbidden: [
    {
      name: 'hsm-is-the-bottom',
      severity: 'error',
      comment: 'hsm/ speaks PKCS#11 only; it knows nothing of FHIR, HTTP or SQL',
      from: { path: '^hsm/' },
      to: { path: '^(src|plugins|bin)/' },
    },
    {
      name: 'hsm-no-http-or-sql',
      severity: 'error',
      from: { path: '^hsm/' },
      to: { path: 'node_modules/(fastify|pg|graphile-worker|@fastify)/' },
    },
    {
      name: 'src-not-above',
      severity: 'error',
      comment: 'src/ never imports the Fastify adapters or the entry points',
      from: { path: '^src/' },
      to: { path: '^(plugins|bin)/' },
    },
    { name: 'plugins-not-bin', severity: 'error', from: { path: '^plugins/' }, to: { path: '^bin/' } },
    {
      name: 'src-framework-free',
      severity: 'error',
      comment: 'src/ is the product without its HTTP adapter: nothing under it imports Fastify',
      from: { path: '^src/' },
      to: { path: 'node_modules/(fastify|@fastify|fastify-plugin)/' },
    },
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
