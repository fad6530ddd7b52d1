import { useEffect, useState } from 'react';

const KEY = 'switchyard-explorer-theme';

function system() {
  return window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

/** Light or dark: the system's choice until the user picks one (remembered). */
export function Theme() {
  const [theme, setTheme] = useState(() => localStorage.getItem(KEY) || system());
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
  }, [theme]);
  const next = theme === 'dark' ? 'light' : 'dark';
  return (
    <button
      type="button"
      className="theme"
      aria-label={`Switch to the ${next} theme`}
      onClick={() => {
        localStorage.setItem(KEY, next);
        setTheme(next);
      }}
    >
      {theme === 'dark' ? '☀ Light' : '☾ Dark'}
    </button>
  );
}
