import { Link, href } from './route.jsx';
import { Subgraphs } from './Browse.jsx';

/** The client versions this router has seen send an operation (since it started). */
export function Seen({ rows }) {
  if (!rows?.length) return <span className="muted small">not sent since this router started</span>;
  return (
    <span className="small seen">
      sent by{' '}
      {rows.map((row) => (
        <span key={`${row.client} ${row.version}`} className={`badge ${row.retiredVersion ? 'retired' : ''}`}>
          {row.client} {row.version}
          {row.retiredVersion ? ' (retired)' : ''} ×{row.count}
        </span>
      ))}
    </span>
  );
}

export function OperationsView({ data, client }) {
  const { catalogue } = data;
  const shown = catalogue.operations.filter((op) => !client || op.clients.includes(client));
  return (
    <>
      <h1>Persisted operations</h1>
      <p className="lead">
        What the apps ship (<code>persisted-queries/manifest.json</code>): {catalogue.operations.length} operations.
      </p>
      <nav aria-label="Clients" className="tabs">
        <Link to={href('operations')} aria-current={!client ? 'page' : undefined}>
          All
        </Link>
        {catalogue.clients.map((c) => (
          <Link key={c} to={`${href('operations')}?client=${encodeURIComponent(c)}`} aria-current={client === c ? 'page' : undefined}>
            {c} ({catalogue.operations.filter((op) => op.clients.includes(c)).length})
          </Link>
        ))}
      </nav>
      {client && catalogue.retiredVersions?.[client] && (
        <p className="notice">
          {client} versions <code>{catalogue.retiredVersions[client]}</code> are retired: they get UPGRADE_REQUIRED.
        </p>
      )}
      <table>
        <thead>
          <tr>
            <th scope="col">Operation</th>
            <th scope="col">Kind</th>
            <th scope="col">Clients</th>
            <th scope="col">Subgraphs</th>
            <th scope="col">Fields</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((op) => (
            <tr key={op.id}>
              <td>
                <Link to={href('operations', op.id)} className="name">
                  {op.name}
                </Link>{' '}
                {op.retired && <span className="badge retired">retired</span>}
              </td>
              <td>{op.type}</td>
              <td>{op.clients.join(', ')}</td>
              <td>
                <Subgraphs names={op.subgraphs} />
              </td>
              <td>{op.fields.length}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function OperationView({ data, id }) {
  const op = data.catalogue.operations.find((o) => o.id === id);
  if (!op) {
    return (
      <p role="alert">
        No persisted operation with id <code>{id}</code>. <Link to={href('operations')}>All operations</Link>.
      </p>
    );
  }
  return (
    <>
      <p className="crumbs">
        <Link to={href('operations')}>Operations</Link>
      </p>
      <h1>
        {op.name} <span className="muted">{op.type}</span> {op.retired && <span className="badge retired">retired</span>}
      </h1>
      <dl className="facts">
        <dt>Id</dt>
        <dd>
          <code className="id">{op.id}</code>
        </dd>
        <dt>Clients</dt>
        <dd>{op.clients.join(', ')}</dd>
        <dt>Subgraphs</dt>
        <dd>
          <Subgraphs names={op.subgraphs} />
        </dd>
        <dt>Seen</dt>
        <dd>
          <Seen rows={data.seen?.[op.id]} />
        </dd>
      </dl>
      <p>
        <Link to={`${href('run')}?operation=${encodeURIComponent(op.id)}`} className="button">
          Run by id
        </Link>
      </p>
      <h2>Text</h2>
      <pre className="operation">
        <code>{op.body}</code>
      </pre>
      <h2>Fields it selects ({op.fields.length})</h2>
      <ul className="columns">
        {op.fields.map((f) => {
          const [typeName, fieldName] = f.split('.');
          return (
            <li key={f}>
              <Link to={href('type', typeName, 'field', fieldName)}>{f}</Link>
            </li>
          );
        })}
      </ul>
    </>
  );
}
