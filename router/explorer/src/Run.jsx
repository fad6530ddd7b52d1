import 'graphiql/graphiql.css';
import { useEffect, useMemo, useState } from 'react';
import { GraphiQL } from 'graphiql';
import { buildSchema } from 'graphql';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { getText, graphqlUrl } from './api.js';
import { href, navigate } from './route.jsx';

const DEFAULT_QUERY = `# Runs against this router. Put a bearer token in Headers to run as a user:
#   {"Authorization": "Bearer <access token>"}
query Feed {
  feed(first: 3) {
    nodes {
      id
      body
      author {
        handle
      }
    }
  }
}
`;

/** The page's theme, following the toggle while the editor is open. */
function useTheme() {
  const read = () => document.documentElement.dataset.theme || 'light';
  const [theme, setTheme] = useState(read);
  useEffect(() => {
    const observer = new MutationObserver(() => setTheme(read()));
    observer.observe(document.documentElement, { attributes: true, attributeFilter: ['data-theme'] });
    return () => observer.disconnect();
  }, []);
  return theme;
}

/** The GraphiQL editor against this router; optionally sends a persisted operation by its id. */
export default function RunView({ data, query }) {
  const operations = data.catalogue?.operations ?? [];
  const selectedId = query.get('operation') || '';
  const selected = operations.find((op) => op.id === selectedId);
  const theme = useTheme();
  // The editor gets the API schema from the explorer, not by introspection: it works where
  // introspection is off (production) and is not subject to the operation limits.
  const [schema, setSchema] = useState(null);
  const [schemaError, setSchemaError] = useState(null);
  useEffect(() => {
    getText('api/sdl')
      .then((sdl) => setSchema(buildSchema(sdl)))
      .catch((error) => setSchemaError(error.message));
  }, []);
  const fetcher = useMemo(() => {
    const byText = createGraphiQLFetcher({ url: graphqlUrl });
    if (!selected) return byText;
    return async (params, options) => {
      const response = await fetch(graphqlUrl, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json, application/json',
          'apollographql-client-name': selected.clients[0],
          ...(options?.headers ?? {}),
        },
        body: JSON.stringify({
          operationName: selected.name,
          variables: params.variables ?? {},
          extensions: { persistedQuery: { version: 1, sha256Hash: selected.id } },
        }),
      });
      return response.json();
    };
  }, [selected]);

  return (
    <div className="run">
      <div className="run-bar">
        <label htmlFor="persisted">Send</label>
        <select
          id="persisted"
          value={selected ? selected.id : ''}
          onChange={(event) => {
            const id = event.target.value;
            navigate(id ? `${href('run')}?operation=${encodeURIComponent(id)}` : href('run'));
          }}
        >
          <option value="">the editor's text</option>
          {operations.map((op) => (
            <option key={op.id} value={op.id}>
              persisted {op.name} ({op.clients.join(', ')}) by id
            </option>
          ))}
        </select>
        {selected && (
          <span className="muted small">
            Sent as <code>extensions.persistedQuery</code> with id <code>{selected.id.slice(0, 12)}…</code>; edits to
            the text are not sent, variables and headers are.
          </span>
        )}
      </div>
      {schemaError && (
        <p role="alert" className="error">
          Could not load the schema for the editor: {schemaError}
        </p>
      )}
      <div className="run-editor">
        {schema && (
        <GraphiQL
          schema={schema}
          key={selected?.id ?? 'text'}
          fetcher={fetcher}
          defaultQuery={DEFAULT_QUERY}
          query={selected ? selected.body : undefined}
          variables={selected ? '{}' : undefined}
          isHeadersEditorEnabled
          shouldPersistHeaders={false}
          defaultEditorToolsVisibility={selected ? 'variables' : 'headers'}
          forcedTheme={theme}
        />
        )}
      </div>
    </div>
  );
}
