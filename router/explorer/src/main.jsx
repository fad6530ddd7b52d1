import './styles.css';
import { StrictMode, Suspense, lazy, useEffect, useMemo, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { getJson } from './api.js';
import { Link, href, useRoute } from './route.jsx';
import { Search } from './Search.jsx';
import { Theme } from './Theme.jsx';
import { Home, TypeView, FieldView } from './Browse.jsx';
import { OperationsView, OperationView } from './Operations.jsx';
import { ChangesView } from './Changes.jsx';

// GraphiQL is most of the bundle: loaded only when the Run view opens.
const RunView = lazy(() => import('./Run.jsx'));

/** Everything the views share: the schema model, the catalogue and the usage index. */
function useData() {
  const [data, setData] = useState({ loading: true });
  useEffect(() => {
    // Usage is what this router has seen; the explorer works without it.
    Promise.all([getJson('api/schema'), getJson('api/operations'), getJson('api/usage').catch(() => null)])
      .then(([schema, catalogue, usage]) => setData({ schema, catalogue, seen: usage?.operations ?? {} }))
      .catch((error) => setData({ error: error.message }));
  }, []);
  return useMemo(() => {
    if (!data.schema) return data;
    const types = new Map(data.schema.types.map((t) => [t.name, t]));
    // "Type.field" -> the persisted operations that select it.
    const usages = new Map();
    for (const op of data.catalogue.operations) {
      for (const field of op.fields) {
        if (!usages.has(field)) usages.set(field, []);
        usages.get(field).push(op);
      }
    }
    return { ...data, types, usages };
  }, [data]);
}

function View({ data }) {
  const { parts, query } = useRoute();
  const [section, ...rest] = parts;
  useEffect(() => {
    document.title = ['Switchyard explorer', ...parts].join(' · ');
  }, [parts]);
  if (section === 'run') {
    return (
      <Suspense fallback={<p role="status">Loading the editor…</p>}>
        <RunView data={data} query={query} />
      </Suspense>
    );
  }
  if (data.loading) return <p role="status">Loading the schema…</p>;
  if (data.error) return <p role="alert" className="error">Could not load the schema: {data.error}</p>;
  if (section === 'type' && rest.length === 3 && rest[1] === 'field') {
    return <FieldView data={data} typeName={rest[0]} fieldName={rest[2]} />;
  }
  if (section === 'type' && rest.length === 1) return <TypeView data={data} name={rest[0]} />;
  if (section === 'operations' && rest.length === 1) return <OperationView data={data} id={rest[0]} />;
  if (section === 'operations') return <OperationsView data={data} client={query.get('client')} />;
  if (section === 'changes') return <ChangesView data={data} />;
  if (section === undefined) return <Home data={data} />;
  return (
    <p role="alert">
      Nothing at this address. <Link to={href()}>Back to the schema</Link>.
    </p>
  );
}

function NavLink({ to, section, children }) {
  const { parts } = useRoute();
  const active = (parts[0] ?? '') === section || (section === '' && parts[0] === 'type');
  return (
    <Link to={to} aria-current={active ? 'page' : undefined}>
      {children}
    </Link>
  );
}

function App() {
  const data = useData();
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link to={href()} className="brand">
          Switchyard explorer
        </Link>
        <nav aria-label="Sections">
          <NavLink to={href()} section="">Schema</NavLink>
          <NavLink to={href('operations')} section="operations">Operations</NavLink>
          <NavLink to={href('changes')} section="changes">Schema changes</NavLink>
          <NavLink to={href('run')} section="run">Run</NavLink>
        </nav>
        <Search data={data} />
        <Theme />
      </header>
      <main id="main" tabIndex={-1}>
        <View data={data} />
      </main>
    </>
  );
}

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
