import { dirname } from 'node:path';
import express, { Router } from 'express';

/**
 * Swagger UI at /docs over the OpenAPI document: swagger-ui-dist's files served as they
 * are (never `require`d: its bundle is for browsers), and one page that points it at the
 * document. No network access: everything comes from node_modules.
 */

const ASSETS = dirname(require.resolve('swagger-ui-dist/package.json'));

function page(base: string, specUrl: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>comfyui-queue API</title>
<link rel="stylesheet" href="${base}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="${base}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({ url: ${JSON.stringify(specUrl)}, dom_id: '#swagger-ui', deepLinking: true });
</script>
</body>
</html>
`;
}

export function swaggerUi(specUrl: string): Router {
  const router = Router();
  router.get('/', (req, res) => {
    res.type('html').send(page(req.baseUrl, specUrl));
  });
  router.use(express.static(ASSETS, { index: false }));
  return router;
}
