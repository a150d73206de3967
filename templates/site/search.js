// The site's search box: every paper of every digest, found with Pagefind's static index
// (pagefind/, written by `feeds build`), in the browser, without a server.
//
// A page shows the box by holding <section id="search-section" hidden> with a
// <div id="search" data-root="..."> in it (data-root leads from the page to the site's top
// folder). Where the index cannot be loaded (a page opened from file://, a site built
// without it) the section stays hidden: the rest of the page works as before.
//
// Results are papers, not pages: each links to the paper's anchor in the issue that first
// showed it, and shows its titles, date, category, star, authors and affiliations, from the
// record's metadata (feeds/search.py). Text from the index reaches the page as text only;
// of an excerpt's markup only Pagefind's <mark> is kept.
//
// The index is one Pagefind index per month (pagefind/YYYY-MM/), listed newest first in
// pagefind/periods.json. Newest first (the default order), a query searches the newest month,
// then the next older one, and so on only until it has a page of results (or has searched a
// year of months); "More results" / "Search earlier papers" goes on from there. So a query fetches the months it needs, not ten years of metadata.
// Each older month is merged into the one Pagefind instance (one script, one WebAssembly),
// tagged with its month as a filter, so each month is searched and sorted by date on its own.
// Best match ranks every paper against every other, so it loads every month.

const SHOWN = 20;
const NEWEST = "date";
// The most months one step of a newest-first search opens.
const STEP = 12;
const STYLE = `
#search form { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: flex-end; }
#search .search-field { display: flex; flex-direction: column; gap: .2rem; min-width: 0; }
#search .search-query { flex: 1 1 100%; }
#search input[type=search] { width: 100%; box-sizing: border-box; padding: .45rem .5rem; font: inherit; }
#search select { font: inherit; padding: .3rem; max-width: 100%; }
#search .search-check { display: inline-flex; gap: .35rem; align-items: center; }
#search .search-results { list-style: none; padding: 0; margin: .5rem 0 0; }
#search .search-result { padding: .75rem 0; border-bottom: 1px solid currentColor; border-bottom-color: rgba(128, 128, 128, .4); }
#search .search-result p { margin: .2rem 0; overflow-wrap: anywhere; }
#search .search-title { font-weight: 600; }
#search .search-more { font: inherit; padding: .4rem .8rem; margin-top: .5rem; }
`;

const mount = document.getElementById("search");
if (mount) {
  start(mount).catch(() => {});
}

async function start(mount) {
  const root = new URL(mount.dataset.root || "./", document.baseURI);
  const base = new URL("pagefind/", root);
  const response = await fetch(new URL("periods.json", base));
  if (!response.ok) return;
  const manifest = await response.json();
  const periods = manifest.periods.map((period) => period.id);
  if (!periods.length) return;
  const folder = (id) => new URL(`${id}/`, base).pathname;
  const pagefind = await import(new URL(`${periods[0]}/pagefind.js`, base).href);
  // The newest month is Pagefind's own index; the others are merged into it when needed.
  await pagefind.options({ basePath: folder(periods[0]), mergeFilter: { period: periods[0] } });
  await pagefind.init();
  const merged = new Map([[periods[0], Promise.resolve()]]);
  const open = (id) => {
    if (!merged.has(id)) {
      merged.set(id, pagefind.mergeIndex(folder(id), { mergeFilter: { period: id } }));
    }
    return merged.get(id);
  };

  const style = document.createElement("style");
  style.textContent = STYLE;
  document.head.append(style);

  const form = element("form", { role: "search" });
  form.addEventListener("submit", (event) => event.preventDefault());
  const query = element("input", {
    id: "search-q", type: "search", name: "q", autocomplete: "off", spellcheck: "false",
  });
  form.append(field("search-query", "search-q", "搜索论文 Search papers", query));

  const category = element("select", { id: "search-category", name: "category" });
  category.append(option("", "全部分类 All categories"));
  for (const name of manifest.categories) category.append(option(name, name));
  form.append(field("search-filter", "search-category", "分类 Category", category));

  const sort = element("select", { id: "search-sort", name: "sort" });
  sort.append(option(NEWEST, "最新优先 Newest first"), option("", "最相关 Best match"));
  form.append(field("search-filter", "search-sort", "排序 Sort", sort));

  const starred = element("input", { id: "search-starred", type: "checkbox", name: "starred" });
  const check = element("label", { class: "search-check", for: "search-starred" });
  check.append(starred, text(" ★ 只看重点关注 Starred only"));
  form.append(check);

  const status = element("p", { id: "search-status", role: "status" });
  const list = element("ol", { id: "search-results", class: "search-results" });
  const more = element("button", { id: "search-more", type: "button", class: "search-more" });
  more.textContent = "更多结果 More results";
  more.hidden = true;
  mount.append(form, status, list, more);
  mount.closest("#search-section")?.removeAttribute("hidden");

  // The query shown: what it found so far, how many of those are shown, the next month to
  // search (newest first) or periods.length once every month was searched.
  let current = null;
  let asked = 0;

  // Newest first: search older months until `want` results are found, none is left, or a
  // year of months was searched in this step (a rare word would otherwise walk back through
  // every month at once: 485 requests and 1.4 MB on ten years; the button goes on).
  const fill = async (state, want) => {
    const stop = state.next + STEP;
    while (state.found.length < want && state.next < periods.length && state.next < stop) {
      const id = periods[state.next];
      await open(id);
      const filters = { ...state.filters, period: id };
      const search = await pagefind.search(state.term, { filters, sort: { [NEWEST]: "desc" } });
      state.next += 1;
      if (search.results.length && fellBack(await search.results[0].data(), state.term)) continue;
      state.found.push(...search.results);
    }
  };

  const show = async (ask) => {
    const state = current;
    if (state.newest) {
      await fill(state, state.shown + SHOWN);
    } else if (state.next === 0) {
      await Promise.all(periods.map(open));
      const search = await pagefind.search(state.term, { filters: state.filters });
      state.found = search.results;
      state.next = periods.length;
    }
    const page = state.found.slice(state.shown, state.shown + SHOWN);
    const data = await Promise.all(page.map((r) => r.data()));
    if (ask !== asked) return; // a newer query is under way
    list.append(...data.map((found) => result(found, root)));
    state.shown += page.length;
    const total = state.found.length;
    const everywhere = state.next >= periods.length;
    const reach = periods[state.next - 1];
    const back = everywhere ? "" : ` (已搜索至 ${reach} searched back to ${reach})`;
    status.textContent = total === 0
      ? `没有结果 No results${back}`
      : `${total} 篇论文 ${total === 1 ? "paper" : "papers"}${back}` +
        (total > state.shown || !everywhere ? `, 显示 ${state.shown} 篇 showing ${state.shown}` : "");
    more.hidden = everywhere && state.shown >= total;
    more.textContent = state.shown < total
      ? "更多结果 More results" : "搜索更早的论文 Search earlier papers";
    // Which search the list shows, for whoever waits for it (the tests).
    mount.dataset.done = String(ask);
  };

  const run = async () => {
    const ask = ++asked;
    const term = query.value.trim();
    const filters = {};
    if (category.value) filters.category = category.value;
    if (starred.checked) filters.starred = "重点关注";
    list.replaceChildren();
    more.hidden = true;
    if (!term) {
      status.textContent = "";
      current = null;
      mount.dataset.done = String(ask);
      return;
    }
    current = { term, filters, newest: sort.value === NEWEST, found: [], next: 0, shown: 0 };
    await show(ask);
  };
  let timer = 0;
  query.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(run, 150);
  });
  for (const control of [category, sort, starred]) control.addEventListener("change", run);
  more.addEventListener("click", () => {
    if (!current || more.disabled) return;
    more.disabled = true; // one page at a time: two at once would search a month twice
    show(asked).finally(() => { more.disabled = false; });
  });
}

// Whether a month's best result matched only what Pagefind falls back to when no word of that
// month's index starts with a query word: the longest word that is the start of it ("多" for
// "多视角" in a month without "多视角"). A single index over every paper does that only when
// no paper at all has the word; an index per month would otherwise fill the newest months'
// results with papers that merely share a first character. The sign: the best result's text
// does not hold every query word (a Latin word but for an ending's few letters, as Pagefind
// matches stems: "supervise" is a match for "supervised").
function fellBack(data, term) {
  const text = normal(data.content || "");
  return !normal(term).split(/\s+/).filter(Boolean).every((word) =>
    text.includes(/[\u3000-\u9fff\uf900-\ufaff]/u.test(word)
      ? word : word.slice(0, Math.max(1, word.length - 3))));
}

// A word as Pagefind compares it: lower case, without punctuation.
function normal(words) {
  return words.toLocaleLowerCase().replace(/[\p{Pd}\p{Pe}\p{Pf}\p{Pi}\p{Po}\p{Ps}]/gu, "");
}

function result(data, root) {
  const meta = data.meta || {};
  const item = element("li", { class: "search-result" });
  const title = element("p", { class: "search-title", lang: "en" });
  const link = element("a", { href: new URL(data.url, root).href });
  link.textContent = meta.title || data.url;
  title.append(link);
  item.append(title);
  if (meta.title_zh) item.append(paragraph("search-title-zh", meta.title_zh, "zh-CN"));
  const facts = [meta.date, meta.category, meta.starred && `★ ${meta.starred}`].filter(Boolean);
  item.append(paragraph("search-meta", facts.join(" · ")));
  if (meta.authors) {
    const who = meta.affiliations ? `${meta.authors} [${meta.affiliations}]` : meta.authors;
    item.append(paragraph("search-authors", who, "en"));
  }
  if (data.excerpt) {
    const excerpt = element("p", { class: "search-excerpt" });
    excerpt.append(...marked(data.excerpt));
    item.append(excerpt);
  }
  return item;
}

// The excerpt's text, with Pagefind's <mark> elements kept and nothing else of its markup.
function marked(html) {
  const template = document.createElement("template");
  template.innerHTML = html; // inert: nothing in a template runs or loads
  const nodes = [];
  for (const node of template.content.childNodes) {
    if (node.nodeName === "MARK") {
      const mark = document.createElement("mark");
      mark.textContent = node.textContent;
      nodes.push(mark);
    } else {
      nodes.push(text(node.textContent));
    }
  }
  return nodes;
}

function field(kind, id, label, control) {
  const wrap = element("div", { class: `search-field ${kind}` });
  const name = element("label", { for: id });
  name.textContent = label;
  wrap.append(name, control);
  return wrap;
}

function option(value, label) {
  const choice = element("option", { value });
  choice.textContent = label;
  return choice;
}

function paragraph(kind, words, lang) {
  const p = element("p", { class: kind });
  if (lang) p.lang = lang;
  p.textContent = words;
  return p;
}

function element(name, attributes) {
  const el = document.createElement(name);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
  return el;
}

function text(words) {
  return document.createTextNode(words);
}
