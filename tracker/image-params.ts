/** The `:name/:version` path parameters of the routes that serve one image version (HTTP API and boot routes). */
export const imageVersionParams = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 200 },
    version: { type: 'string', maxLength: 20 },
  },
  required: ['name', 'version'],
} as const;
