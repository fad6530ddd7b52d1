// The explorer in headless Chromium, as a frontend developer uses it: find a field, see its
// owner and its users, judge a breaking change, run a query. Screenshots go to the directory
// given as the second argument. Fails (exit 1) on any failed step, page error or console
// error (a Content-Security-Policy violation is one).
//
// Usage: node tests/browser.mjs http://127.0.0.1:4000/explorer/ <screenshot dir>
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error('usage: node tests/browser.mjs <explorer url ending in /> <screenshot dir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // Root in a container has no user namespace for Chromium's sandbox.
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const problems = [];
const step = async (name, body) => {
  const started = Date.now();
  try {
    await body();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    problems.push(`${name}: ${error.message.split('\n')[0]}`);
    console.log(`FAIL ${name}: ${error.message}`);
    await page.screenshot({ path: join(shots, `failed-${name.replace(/\W+/g, '-')}.png`) }).catch(() => {});
  }
};
const expect = (condition, message) => {
  if (!condition) throw new Error(message);
};

const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
const page = await context.newPage();
page.setDefaultTimeout(15000);
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
page.on('console', (message) => {
  if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
});
const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: false });

await step('home loads with the schema', async () => {
  const started = Date.now();
  await page.goto(base);
  await page.getByRole('heading', { name: 'Schema', exact: true }).waitFor();
  await page.getByRole('link', { name: 'Post', exact: true }).first().waitFor();
  const ready = Date.now() - started;
  const nav = await page.evaluate(() => performance.getEntriesByType('navigation')[0].toJSON());
  console.log(
    `     load: schema visible after ${ready} ms; DOMContentLoaded ${Math.round(nav.domContentLoadedEventEnd)} ms, load ${Math.round(nav.loadEventEnd)} ms`,
  );
  await shot('01-home-light');
});

await step('search finds a field as you type and opens it', async () => {
  const search = page.getByRole('combobox', { name: 'Search types and fields' });
  await search.fill('likeCo');
  const option = page.getByRole('option', { name: /^Post\.likeCount/ });
  await option.waitFor();
  await shot('02-search');
  await option.click();
  await page.waitForURL(/\/type\/Post\/field\/likeCount$/);
  await page.getByRole('heading', { name: /Post\.likeCount/ }).waitFor();
});

await step('the field shows its owning subgraph and cache hint', async () => {
  const facts = page.locator('dl.facts');
  await facts.getByText('engagement', { exact: true }).waitFor();
  await facts.getByText(/max-age \d+s/).waitFor();
  await shot('03-field-owner');
});

await step('the field lists the persisted operations using it, by client', async () => {
  const usages = page.locator('section.usages');
  await usages.getByRole('heading', { name: /Persisted operations using it \(\d+\)/ }).waitFor();
  const heading = await usages.getByRole('heading', { level: 2 }).textContent();
  expect(!heading.includes('(0)'), `no usages: ${heading}`);
  await usages.getByRole('heading', { name: /^ios/ }).waitFor();
  await shot('04-field-usages');
  await usages.getByRole('link').first().click();
  await page.waitForURL(/\/operations\/[0-9a-f]{64}$/);
  await page.getByRole('heading', { name: 'Text' }).waitFor();
  await page.locator('pre.operation').getByText('likeCount').waitFor();
  await shot('05-operation');
});

await step('a deep link opens the field directly', async () => {
  await page.goto(`${base}type/Post/field/author`);
  await page.getByRole('heading', { name: /Post\.author/ }).waitFor();
  await page.locator('dl.facts').getByText('posts', { exact: true }).waitFor();
});

await step('an entity shows its keys and which subgraphs contribute which fields', async () => {
  await page.goto(`${base}type/Post`);
  await page.getByRole('heading', { name: 'Keys and contributions' }).waitFor();
  const row = page.getByRole('row').filter({ hasText: 'engagement' }).first();
  await row.getByText(/likeCount/).waitFor();
  await shot('06-entity');
});

await step('the operation catalogue is grouped by client', async () => {
  await page.goto(`${base}operations?client=android`);
  await page.getByRole('link', { name: /^android \(\d+\)$/ }).waitFor();
  expect(
    (await page.getByRole('link', { name: /^android/ }).getAttribute('aria-current')) === 'page',
    'the android tab is not current',
  );
  await page.getByRole('link', { name: 'HomeFeed' }).first().waitFor();
  await shot('07-operations-android');
});

await step('a breaking schema change names the operations it breaks', async () => {
  await page.goto(`${base}changes`);
  await page.getByLabel('Subgraph', { exact: true }).selectOption('posts');
  const sdl = page.getByLabel('Proposed SDL of posts');
  await page.waitForFunction(() => document.querySelector('textarea')?.value.includes('type Post'));
  const current = await sdl.inputValue();
  // Post.mediaUrls (not the input field of the same name, which has a default).
  const proposed = current.replace(/(type Post [^{]*\{[^}]*?)\n\s*mediaUrls: \[String!\]!/, '$1');
  expect(proposed !== current, 'could not remove Post.mediaUrls from the SDL');
  await sdl.fill(proposed);
  await page.getByRole('button', { name: 'Check the change' }).click();
  await page.getByText(/Composes, but breaks \d+ persisted operation/).waitFor({ timeout: 30000 });
  await page.getByRole('cell', { name: 'Post.mediaUrls' }).waitFor();
  await page.getByRole('heading', { name: 'Operations that would break' }).waitFor();
  await page.getByRole('link', { name: 'HomeFeed' }).first().waitFor();
  await shot('08-breaking-change');
  // The unchanged SDL is safe.
  await page.getByRole('button', { name: 'Reset to current' }).click();
  await page.getByRole('button', { name: 'Check the change' }).click();
  await page.getByText(/Safe: composes, and all \d+ persisted operations still validate/).waitFor({ timeout: 30000 });
});

await step('a change that does not compose shows the composition errors with their codes', async () => {
  const sdl = page.getByLabel('Proposed SDL of posts');
  const current = await sdl.inputValue();
  // engagement resolves Post.likeCount (Int!): a second, non-shareable definition conflicts.
  const proposed = current.replace(/(type Post [^{]*\{[^}]*?\n(\s*)body: String!)/, '$1\n$2likeCount: String!');
  expect(proposed !== current, 'could not add Post.likeCount to the SDL');
  await sdl.fill(proposed);
  await page.getByRole('button', { name: 'Check the change' }).click();
  await page.getByText(/Does not compose: \d+ error/).waitFor({ timeout: 30000 });
  await page.locator('ul.problems code').first().waitFor();
  const codes = await page.locator('ul.problems code').allTextContents();
  expect(codes.every((c) => /^[A-Z_]+$/.test(c)), `error codes: ${codes}`);
  await shot('09-does-not-compose');
});

await step('the editor runs a query against this router and shows data', async () => {
  await page.goto(`${base}run`);
  await page.locator('.graphiql-container').waitFor();
  await page.locator('.graphiql-query-editor').getByText('feed').first().waitFor();
  await page.locator('.graphiql-execute-button').click();
  await page.locator('.result-window').getByText('"handle"').first().waitFor({ timeout: 20000 });
  await shot('10-run-query');
});

await step('the editor runs a persisted operation by id', async () => {
  const ids = await page.evaluate(async () => {
    const response = await fetch(new URL('api/operations', document.baseURI));
    const body = await response.json();
    return body.operations.filter((op) => op.name === 'HomeFeed').map((op) => op.id);
  });
  expect(ids.length > 0, 'no HomeFeed in the catalogue');
  await page.goto(`${base}run?operation=${ids[0]}`);
  await page.locator('.graphiql-container').waitFor();
  await page.getByText(/Sent as/).waitFor();
  await page.locator('.graphiql-query-editor').getByText('HomeFeed').first().waitFor();
  await page.locator('.graphiql-execute-button').click();
  await page.locator('.result-window').getByText('"edges"').first().waitFor({ timeout: 20000 });
  await shot('11-run-persisted');
  // The router saw that operation sent: its page says by whom.
  await page.goto(`${base}operations/${ids[0]}`);
  await page.locator('dl.facts .seen').getByText(/ unknown ×\d+/).first().waitFor();
});

await step('the dark theme switches and is remembered', async () => {
  await page.goto(base);
  await page.getByRole('button', { name: 'Switch to the dark theme' }).click();
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  expect(background === 'rgb(13, 17, 23)', `dark background is ${background}`);
  await page.reload();
  await page.getByRole('button', { name: 'Switch to the light theme' }).waitFor();
  await page.goto(`${base}type/Post`);
  await page.getByRole('heading', { name: 'Fields' }).waitFor();
  await shot('12-type-dark');
});

await step('keyboard: skip link first, search reachable, results by arrow keys', async () => {
  await page.goto(base);
  await page.getByRole('heading', { name: 'Schema', exact: true }).waitFor();
  await page.keyboard.press('Tab');
  expect((await page.evaluate(() => document.activeElement.textContent)) === 'Skip to content', 'skip link is not first');
  const search = page.getByRole('combobox', { name: 'Search types and fields' });
  await search.focus();
  await page.keyboard.type('handle');
  await page.getByRole('option').first().waitFor();
  await page.keyboard.press('ArrowDown');
  const selected = await page.getByRole('option', { selected: true }).textContent();
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/type\/\w+(\/field\/\w+)?$/);
  expect(selected.toLowerCase().includes('handle'), `selected ${selected}`);
});

await browser.close();
if (problems.length) {
  console.error(`\n${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log(`\nall explorer checks passed; screenshots in ${shots}`);
