import { defineConfig } from 'vite';

// No plugins: Vite 8 compiles JSX with the automatic React runtime. The build is
// deterministic (same lockfile, same bytes), which `npm run check-dist` relies on.
export default defineConfig({
  // Relative asset URLs: the router serves the explorer under any path and injects
  // `<base href>` into index.html, so deep links resolve assets against the explorer root.
  base: './',
  build: {
    outDir: process.env.EXPLORER_OUT_DIR || 'dist',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1200,
    rolldownOptions: {
      onwarn(warning, defaultHandler) {
        // "use client" directives in GraphiQL's dependencies mean nothing in a bundle.
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        defaultHandler(warning);
      },
    },
  },
});
