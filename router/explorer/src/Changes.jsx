import { useEffect, useId, useRef, useState } from 'react';
import { getText, postJson } from './api.js';
import { Link, href } from './route.jsx';

/** Paste or upload a subgraph's proposed SDL: does it compose, and which shipped operations break? */
export function ChangesView({ data }) {
  const subgraphs = data.schema.subgraphs.map((s) => s.name);
  const [subgraph, setSubgraph] = useState(subgraphs[0]);
  const [sdl, setSdl] = useState('');
  const [loaded, setLoaded] = useState({});
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const ids = { subgraph: useId(), sdl: useId(), file: useId() };

  // The selection when an answer arrives: a late answer for another subgraph is kept in
  // `loaded` but does not replace the text being edited.
  const selected = useRef(subgraph);
  selected.current = subgraph;
  useEffect(() => {
    if (!subgraph || loaded[subgraph] !== undefined) return;
    const name = subgraph;
    getText(`api/subgraphs/${encodeURIComponent(name)}/sdl`)
      .then((text) => {
        setLoaded((l) => ({ ...l, [name]: text }));
        if (selected.current === name) setSdl(text);
      })
      .catch((error) => {
        if (selected.current === name) setResult({ error: error.message });
      });
    // `loaded` is read only to skip a second fetch of the same subgraph.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [subgraph]);

  const check = async (event) => {
    event.preventDefault();
    setBusy(true);
    setResult(null);
    try {
      setResult(await postJson('api/check', { subgraph, sdl }));
    } catch (error) {
      setResult({ error: error.message });
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <h1>Schema changes</h1>
      <p className="lead">
        Propose a subgraph's new schema and see what composition says and which persisted operations would stop
        validating: the checks of <code>switchyard pq check</code>, against the operations the apps ship.
      </p>
      <form onSubmit={check} className="change-form">
        <div className="row">
          <label htmlFor={ids.subgraph}>Subgraph</label>
          <select
            id={ids.subgraph}
            value={subgraph}
            onChange={(event) => {
              setSubgraph(event.target.value);
              setResult(null);
              const known = loaded[event.target.value];
              if (known !== undefined) setSdl(known);
            }}
          >
            {subgraphs.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
          <label htmlFor={ids.file}>or upload SDL</label>
          <input
            id={ids.file}
            type="file"
            accept=".graphql,.graphqls,.gql,text/plain"
            onChange={async (event) => {
              const file = event.target.files?.[0];
              if (file) setSdl(await file.text());
            }}
          />
          <button type="button" onClick={() => setSdl(loaded[subgraph] ?? '')} disabled={sdl === loaded[subgraph]}>
            Reset to current
          </button>
        </div>
        <label htmlFor={ids.sdl}>Proposed SDL of {subgraph}</label>
        <textarea
          id={ids.sdl}
          value={sdl}
          onChange={(event) => setSdl(event.target.value)}
          spellCheck={false}
          rows={22}
        />
        <button type="submit" className="primary" disabled={busy || !sdl.trim()}>
          {busy ? 'Checking…' : 'Check the change'}
        </button>
      </form>
      <section aria-live="polite" aria-label="Check result">
        {result && <Result result={result} />}
      </section>
    </>
  );
}

function Result({ result }) {
  if (result.error) return <p role="alert" className="error">{result.error}</p>;
  const broken = result.breaking ?? [];
  return (
    <div className="result">
      {!result.composes ? (
        <p className={`verdict bad`}>Does not compose: {result.errors.length} error(s).</p>
      ) : broken.length ? (
        <p className="verdict bad">
          Composes, but breaks {broken.length} persisted operation{broken.length === 1 ? '' : 's'} (
          {summary(broken)}).
        </p>
      ) : (
        <p className="verdict good">
          Safe: composes, and all {result.checkedOperations} persisted operations still validate.
        </p>
      )}
      {result.errors?.length > 0 && (
        <>
          <h2>Composition errors</h2>
          <ul className="problems">
            {result.errors.map((e, i) => (
              <li key={i}>
                <code>{e.code}</code> {e.message}
              </li>
            ))}
          </ul>
        </>
      )}
      {result.changes?.length > 0 && (
        <>
          <h2>API changes</h2>
          <table>
            <thead>
              <tr>
                <th scope="col">Field</th>
                <th scope="col">Change</th>
                <th scope="col">Operations using it</th>
              </tr>
            </thead>
            <tbody>
              {result.changes.map((c) => (
                <tr key={c.coordinate + c.change}>
                  <td>
                    <code>{c.coordinate}</code>
                  </td>
                  <td>{c.change}</td>
                  <td>{c.operations}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      {broken.length > 0 && (
        <>
          <h2>Operations that would break</h2>
          <ul className="problems">
            {broken.map((op) => (
              <li key={op.id}>
                <Link to={href('operations', op.id)}>{op.name}</Link> <span className="muted">({op.clients.join(', ')})</span>{' '}
                {op.retired && <span className="badge retired">retired: no supported app sends it</span>}
                <ul>
                  {op.errors.map((e, i) => (
                    <li key={i} className="small">
                      {e}
                    </li>
                  ))}
                </ul>
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}

function summary(ops) {
  const counts = new Map();
  for (const op of ops) for (const c of op.clients) counts.set(c, (counts.get(c) ?? 0) + 1);
  return [...counts].map(([c, n]) => `${c} ${n}`).join(', ');
}
