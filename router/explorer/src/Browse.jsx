import { Fragment } from 'react';
import { Link, href } from './route.jsx';
import { Seen } from './Operations.jsx';

const KINDS = [
  ['OBJECT', 'Object types'],
  ['INTERFACE', 'Interfaces'],
  ['UNION', 'Unions'],
  ['ENUM', 'Enums'],
  ['INPUT_OBJECT', 'Input types'],
  ['SCALAR', 'Scalars'],
];

export function TypeLink({ type }) {
  // `[Post!]!` links to `Post`.
  const name = type.replace(/[[\]!]/g, '');
  return (
    <Link to={href('type', name)} className="type-ref">
      {type}
    </Link>
  );
}

export function Subgraphs({ names }) {
  if (!names?.length) return <span className="muted">—</span>;
  return (
    <span className="subgraphs">
      {names.map((name) => (
        <span key={name} className="badge subgraph" title={`resolved by the ${name} subgraph`}>
          {name}
        </span>
      ))}
    </span>
  );
}

export function CacheHint({ cache }) {
  if (!cache) return <span className="muted">—</span>;
  return (
    <span className={`badge cache ${cache.scope === 'PRIVATE' ? 'private' : ''}`} title="@cacheControl">
      max-age {cache.maxAge ?? 0}s{cache.scope ? ` · ${cache.scope.toLowerCase()}` : ''}
    </span>
  );
}

function Deprecated({ reason }) {
  if (reason == null) return null;
  return (
    <span className="badge deprecated" title={reason}>
      deprecated{reason ? `: ${reason}` : ''}
    </span>
  );
}

/** Input values (a field's arguments, an input type's fields): name, type, default, description. */
function ValuesTable({ id, title, label, values }) {
  return (
    <section aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      <table>
        <thead>
          <tr>
            <th scope="col">{label}</th>
            <th scope="col">Type</th>
            <th scope="col">Default</th>
            <th scope="col">Description</th>
          </tr>
        </thead>
        <tbody>
          {values.map((v) => (
            <tr key={v.name}>
              <td className="name">{v.name}</td>
              <td>
                <TypeLink type={v.type} />
              </td>
              <td>{v.defaultValue ? <code>{v.defaultValue}</code> : <span className="muted">—</span>}</td>
              <td>{v.description}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Usage({ data, typeName, fieldName }) {
  const ops = data.usages.get(`${typeName}.${fieldName}`) ?? [];
  if (!ops.length) return <span className="muted">unused</span>;
  return (
    <Link to={href('type', typeName, 'field', fieldName)} title="the persisted operations that use it">
      {ops.length} operation{ops.length === 1 ? '' : 's'}
    </Link>
  );
}

export function Home({ data }) {
  const { schema } = data;
  return (
    <>
      <h1>Schema</h1>
      <p className="lead">
        {schema.types.length} types from {schema.subgraphs.length} subgraphs, {data.catalogue.operations.length}{' '}
        persisted operations. Search above, or pick a type.
      </p>
      <section aria-labelledby="subgraphs-heading">
        <h2 id="subgraphs-heading">Subgraphs</h2>
        <table>
          <thead>
            <tr>
              <th scope="col">Subgraph</th>
              <th scope="col">Routing URL</th>
              <th scope="col">Types</th>
            </tr>
          </thead>
          <tbody>
            {schema.subgraphs.map((s) => (
              <tr key={s.name}>
                <td>
                  <Subgraphs names={[s.name]} />
                </td>
                <td>
                  <code>{s.url}</code>
                </td>
                <td>{schema.types.filter((t) => t.subgraphs.includes(s.name)).length}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      {KINDS.map(([kind, title]) => {
        const types = schema.types.filter((t) => t.kind === kind);
        if (!types.length) return null;
        return (
          <section key={kind} aria-labelledby={`kind-${kind}`}>
            <h2 id={`kind-${kind}`}>{title}</h2>
            <ul className="type-list">
              {types.map((t) => (
                <li key={t.name}>
                  <Link to={href('type', t.name)}>{t.name}</Link>
                  {t.keys.length > 0 && <span className="badge entity">entity</span>}
                  {t.description && <span className="muted"> — {t.description.split('\n')[0]}</span>}
                </li>
              ))}
            </ul>
          </section>
        );
      })}
    </>
  );
}

export function TypeView({ data, name }) {
  const type = data.types.get(name);
  if (!type) {
    return (
      <p role="alert">
        No type named <code>{name}</code> in the API schema. <Link to={href()}>All types</Link>.
      </p>
    );
  }
  // Entities: which subgraph contributes which fields.
  const contributions = new Map();
  for (const field of type.fields ?? []) {
    for (const subgraph of field.subgraphs) {
      if (!contributions.has(subgraph)) contributions.set(subgraph, []);
      contributions.get(subgraph).push(field.name);
    }
  }
  return (
    <>
      <p className="crumbs">
        <Link to={href()}>Schema</Link> / {type.kind.toLowerCase().replace('_', ' ')}
      </p>
      <h1>
        {type.name} {type.keys.length > 0 && <span className="badge entity">entity</span>}
      </h1>
      {type.description && <p className="description">{type.description}</p>}
      <dl className="facts">
        <dt>Subgraphs</dt>
        <dd>
          <Subgraphs names={type.subgraphs} />
        </dd>
        {type.cache && (
          <>
            <dt>Cache hint</dt>
            <dd>
              <CacheHint cache={type.cache} />
            </dd>
          </>
        )}
        {type.interfaces?.length > 0 && (
          <>
            <dt>Implements</dt>
            <dd>
              {type.interfaces.map((i) => (
                <Fragment key={i}>
                  <TypeLink type={i} />{' '}
                </Fragment>
              ))}
            </dd>
          </>
        )}
        {type.possibleTypes?.length > 0 && (
          <>
            <dt>Possible types</dt>
            <dd>
              {type.possibleTypes.map((i) => (
                <Fragment key={i}>
                  <TypeLink type={i} />{' '}
                </Fragment>
              ))}
            </dd>
          </>
        )}
      </dl>
      {type.keys.length > 0 && (
        <section aria-labelledby="keys-heading">
          <h2 id="keys-heading">Keys and contributions</h2>
          <table>
            <thead>
              <tr>
                <th scope="col">Subgraph</th>
                <th scope="col">@key</th>
                <th scope="col">Fields it resolves</th>
              </tr>
            </thead>
            <tbody>
              {type.subgraphs.map((subgraph) => (
                <tr key={subgraph}>
                  <td>
                    <Subgraphs names={[subgraph]} />
                  </td>
                  <td>
                    {type.keys
                      .filter((k) => k.subgraph === subgraph)
                      .map((k) => (
                        <code key={k.fields} className="key">
                          {k.fields}
                          {k.resolvable ? '' : ' (resolvable: false)'}
                        </code>
                      ))}
                  </td>
                  <td>{(contributions.get(subgraph) ?? []).join(', ') || <span className="muted">—</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
      {type.fields?.length > 0 && (
        <section aria-labelledby="fields-heading">
          <h2 id="fields-heading">Fields</h2>
          <table className="fields">
            <thead>
              <tr>
                <th scope="col">Field</th>
                <th scope="col">Type</th>
                <th scope="col">Resolved by</th>
                <th scope="col">Cache</th>
                <th scope="col">Used by</th>
              </tr>
            </thead>
            <tbody>
              {type.fields.map((f) => (
                <tr key={f.name} id={`field-${f.name}`}>
                  <td>
                    <Link to={href('type', type.name, 'field', f.name)} className="name">
                      {f.name}
                    </Link>
                    {f.args.length > 0 && <span className="muted">({f.args.map((a) => a.name).join(', ')})</span>}{' '}
                    <Deprecated reason={f.deprecationReason} />
                    {f.description && <div className="muted small">{f.description.split('\n')[0]}</div>}
                  </td>
                  <td>
                    <TypeLink type={f.type} />
                  </td>
                  <td>
                    <Subgraphs names={f.subgraphs} />
                  </td>
                  <td>
                    <CacheHint cache={f.cache} />
                  </td>
                  <td>
                    <Usage data={data} typeName={type.name} fieldName={f.name} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
      {type.inputFields?.length > 0 && (
        <ValuesTable id="input-heading" title="Input fields" label="Field" values={type.inputFields} />
      )}
      {type.enumValues?.length > 0 && (
        <section aria-labelledby="values-heading">
          <h2 id="values-heading">Values</h2>
          <ul>
            {type.enumValues.map((v) => (
              <li key={v.name}>
                <code>{v.name}</code> <Deprecated reason={v.deprecationReason} />
                {v.description && <span className="muted"> — {v.description}</span>}
              </li>
            ))}
          </ul>
        </section>
      )}
    </>
  );
}

export function FieldView({ data, typeName, fieldName }) {
  const type = data.types.get(typeName);
  const field = type?.fields?.find((f) => f.name === fieldName);
  if (!field) {
    return (
      <p role="alert">
        No field <code>
          {typeName}.{fieldName}
        </code>{' '}
        in the API schema. {type && <Link to={href('type', typeName)}>Fields of {typeName}</Link>}
      </p>
    );
  }
  const ops = data.usages.get(`${typeName}.${fieldName}`) ?? [];
  const clients = data.catalogue.clients;
  const retiredVersions = data.catalogue.retiredVersions ?? {};
  return (
    <>
      <p className="crumbs">
        <Link to={href()}>Schema</Link> / <Link to={href('type', typeName)}>{typeName}</Link>
      </p>
      <h1>
        {typeName}.{fieldName}: <TypeLink type={field.type} />
      </h1>
      {field.description && <p className="description">{field.description}</p>}
      <dl className="facts">
        <dt>Resolved by</dt>
        <dd>
          <Subgraphs names={field.subgraphs} />
        </dd>
        <dt>Cache hint</dt>
        <dd>
          <CacheHint cache={field.cache} />
        </dd>
        {field.requires && (
          <>
            <dt>@requires</dt>
            <dd>
              <code>{field.requires}</code>
            </dd>
          </>
        )}
        {field.provides && (
          <>
            <dt>@provides</dt>
            <dd>
              <code>{field.provides}</code>
            </dd>
          </>
        )}
        {field.deprecationReason != null && (
          <>
            <dt>Deprecated</dt>
            <dd>{field.deprecationReason || 'yes'}</dd>
          </>
        )}
      </dl>
      {field.args.length > 0 && (
        <ValuesTable id="args-heading" title="Arguments" label="Argument" values={field.args} />
      )}
      <section aria-labelledby="usage-heading" className="usages">
        <h2 id="usage-heading">
          Persisted operations using it ({ops.length})
        </h2>
        {ops.length === 0 ? (
          <p>No persisted operation selects this field: removing it breaks no shipped app.</p>
        ) : (
          clients.map((client) => {
            const mine = ops.filter((op) => op.clients.includes(client));
            if (!mine.length) return null;
            return (
              <div key={client} className="client-usage">
                <h3>
                  {client} ({mine.length})
                  {retiredVersions[client] && (
                    <span className="muted small"> · versions {retiredVersions[client]} are retired</span>
                  )}
                </h3>
                <ul>
                  {mine.map((op) => (
                    <li key={op.id}>
                      <Link to={href('operations', op.id)}>{op.name}</Link> <span className="muted">{op.type}</span>{' '}
                      {op.retired && <span className="badge retired">retired</span>}{' '}
                      <Seen rows={data.seen?.[op.id]?.filter((row) => row.client === client)} />
                    </li>
                  ))}
                </ul>
              </div>
            );
          })
        )}
      </section>
    </>
  );
}
