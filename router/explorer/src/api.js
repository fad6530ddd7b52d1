// The explorer's server side is the router: `api/*` under the explorer's own path (the
// router injects `<base href>`), and the GraphQL endpoint it names in a meta tag.

const base = new URL(document.baseURI);

/** The explorer's root path, always ending in `/` (e.g. `/explorer/`). */
export const basePath = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;

/** Where GraphQL requests go (the router's supergraph path). */
export const graphqlUrl = new URL(
  document.querySelector('meta[name="switchyard-graphql"]')?.content || '/graphql',
  window.location.origin,
).href;

async function parse(response) {
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`${response.status}: ${text.slice(0, 200)}`);
  }
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}

export async function getJson(path) {
  return parse(await fetch(new URL(path, base), { headers: { accept: 'application/json' } }));
}

export async function postJson(path, value) {
  return parse(
    await fetch(new URL(path, base), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(value),
    }),
  );
}

export async function getText(path) {
  const response = await fetch(new URL(path, base));
  if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
  return response.text();
}
