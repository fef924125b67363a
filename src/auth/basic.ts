import type { RequestHandler } from 'express';
import { safeEqual } from './compare';

/**
 * HTTP Basic auth for the dashboard (Bull Board has none of its own). Both the user and
 * the password are compared in constant time; neither is ever logged or echoed.
 */
export interface BasicAuthOptions {
  user: string;
  password: string;
  realm?: string;
}

export function basicAuth(opts: BasicAuthOptions): RequestHandler {
  const realm = (opts.realm ?? 'ComfyUI jobs').replace(/"/g, '');
  return (req, res, next) => {
    const m = /^Basic +([A-Za-z0-9+/=]+) *$/i.exec(req.headers.authorization ?? '');
    if (m) {
      const decoded = Buffer.from(m[1], 'base64').toString('utf8');
      const sep = decoded.indexOf(':');
      if (sep >= 0) {
        const userOk = safeEqual(decoded.slice(0, sep), opts.user);
        const passwordOk = safeEqual(decoded.slice(sep + 1), opts.password);
        if (userOk && passwordOk) return next();
      }
    }
    res.setHeader('WWW-Authenticate', `Basic realm="${realm}", charset="UTF-8"`);
    res.status(401).json({
      error: {
        code: 'unauthorized',
        message: 'dashboard credentials are required (HTTP basic auth)',
      },
    });
  };
}
