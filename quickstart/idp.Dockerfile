# The quickstart's OIDC issuer (idp.mjs: oauth2-mock-server with a login page and a tiny user
# directory), as an image for quickstart/compose.yaml. Build context: quickstart/.
# Dependencies come from package-lock.json (`npm ci`), at build time.
FROM node:22-alpine

WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --loglevel=error \
    && npm cache clean --force
COPY idp.mjs ./

# Listen on every interface of the (shared) network namespace so the port
# published by compose reaches it; `iss` stays http://127.0.0.1:9400, the
# address portcullis is configured with and the one the host uses.
ENV NODE_ENV=production \
    IDP_HOST=0.0.0.0 \
    IDP_PORT=9400 \
    IDP_ISSUER=http://127.0.0.1:9400
# The image's `node` user, by number.
USER 1000:1000
EXPOSE 9400
CMD ["node", "idp.mjs"]
