import { useId, useMemo, useState } from 'react';
import { href, navigate } from './route.jsx';

const LIMIT = 30;

/** Every type and field, searchable by name as you type (prefix matches first). */
export function Search({ data }) {
  const [text, setText] = useState('');
  const [active, setActive] = useState(0);
  const listId = useId();
  const entries = useMemo(() => {
    if (!data.schema) return [];
    const all = [];
    for (const type of data.schema.types) {
      all.push({ label: type.name, detail: type.kind.toLowerCase(), to: href('type', type.name) });
      for (const field of type.fields ?? []) {
        all.push({
          label: `${type.name}.${field.name}`,
          detail: field.type,
          to: href('type', type.name, 'field', field.name),
        });
      }
    }
    return all;
  }, [data.schema]);
  const results = useMemo(() => {
    const needle = text.trim().toLowerCase();
    if (!needle) return [];
    const scored = [];
    for (const entry of entries) {
      const label = entry.label.toLowerCase();
      const last = label.slice(label.lastIndexOf('.') + 1);
      const at = label.indexOf(needle);
      if (at < 0) continue;
      const score = last.startsWith(needle) ? 0 : at === 0 ? 1 : 2;
      scored.push([score, entry]);
    }
    scored.sort((a, b) => a[0] - b[0] || a[1].label.length - b[1].label.length || a[1].label.localeCompare(b[1].label));
    return scored.slice(0, LIMIT).map(([, entry]) => entry);
  }, [entries, text]);
  const go = (entry) => {
    setText('');
    navigate(entry.to);
    document.getElementById('main')?.focus();
  };
  return (
    <div className="search">
      <input
        type="search"
        role="combobox"
        aria-label="Search types and fields"
        aria-expanded={results.length > 0}
        aria-controls={listId}
        aria-activedescendant={results.length ? `${listId}-${active}` : undefined}
        placeholder="Search types and fields…"
        value={text}
        onChange={(event) => {
          setText(event.target.value);
          setActive(0);
        }}
        onKeyDown={(event) => {
          if (event.key === 'ArrowDown') {
            event.preventDefault();
            setActive((i) => Math.min(i + 1, results.length - 1));
          } else if (event.key === 'ArrowUp') {
            event.preventDefault();
            setActive((i) => Math.max(i - 1, 0));
          } else if (event.key === 'Enter' && results[active]) {
            go(results[active]);
          } else if (event.key === 'Escape') {
            setText('');
          }
        }}
      />
      {results.length > 0 && (
        <ul id={listId} role="listbox" className="results" aria-label="Matches">
          {results.map((entry, i) => (
            <li
              key={entry.to}
              id={`${listId}-${i}`}
              role="option"
              aria-selected={i === active}
              onMouseDown={(event) => {
                event.preventDefault();
                go(entry);
              }}
            >
              <span className="name">{entry.label}</span> <span className="muted">{entry.detail}</span>
            </li>
          ))}
        </ul>
      )}
      {text.trim() && results.length === 0 && (
        <p className="results empty" role="status">
          No type or field matches “{text.trim()}”.
        </p>
      )}
    </div>
  );
}
