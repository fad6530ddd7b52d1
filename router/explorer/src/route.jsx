// History-API routing under the explorer's base path: `type/Post/field/author`,
// `operations/<id>`, `changes`, `run`. Every view has a URL people can paste in chat.
import { useEffect, useState } from 'react';
import { basePath } from './api.js';

function current() {
  const path = window.location.pathname;
  const rest = path.startsWith(basePath) ? path.slice(basePath.length) : '';
  return {
    parts: rest.split('/').filter(Boolean).map(decodeURIComponent),
    query: new URLSearchParams(window.location.search),
  };
}

export function href(...parts) {
  return basePath + parts.map(encodeURIComponent).join('/');
}

export function navigate(url) {
  window.history.pushState(null, '', url);
  window.dispatchEvent(new PopStateEvent('popstate'));
}

export function useRoute() {
  const [route, setRoute] = useState(current);
  useEffect(() => {
    const update = () => setRoute(current());
    window.addEventListener('popstate', update);
    return () => window.removeEventListener('popstate', update);
  }, []);
  return route;
}

/** An in-app link: a real `<a href>` (open in a new tab works), navigated without a reload. */
export function Link({ to, children, ...rest }) {
  return (
    <a
      href={to}
      onClick={(event) => {
        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
        event.preventDefault();
        navigate(to);
        window.scrollTo(0, 0);
      }}
      {...rest}
    >
      {children}
    </a>
  );
}
