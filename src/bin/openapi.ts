/**
 * Prints the OpenAPI document (`npm run openapi` writes docs/openapi.json, which
 * `npm run lint` checks with Redocly and a test compares with the code's).
 */
import { buildOpenApiDocument } from '../api/openapi';
import pkg from '../../package.json';

process.stdout.write(
  `${JSON.stringify(buildOpenApiDocument({ version: pkg.version }), null, 2)}\n`,
);
