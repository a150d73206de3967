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

const SHOWN = 20;
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
`;

const mount = document.getElementById("search");
if (mount) {
  start(mount).catch(() => {});
}

async function start(mount) {
  const root = new URL(mount.dataset.root || "./", document.baseURI);
  const pagefind = await import(new URL("pagefind/pagefind.js", root).href);
  await pagefind.init();
  const available = await pagefind.filters();

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
  for (const name of Object.keys(available.category || {}).sort()) {
    category.append(option(name, name));
  }
  form.append(field("search-filter", "search-category", "分类 Category", category));

  const sort = element("select", { id: "search-sort", name: "sort" });
  sort.append(option("date", "最新优先 Newest first"), option("", "最相关 Best match"));
  form.append(field("search-filter", "search-sort", "排序 Sort", sort));

  const starred = element("input", { id: "search-starred", type: "checkbox", name: "starred" });
  const check = element("label", { class: "search-check", for: "search-starred" });
  check.append(starred, text(" ★ 只看重点关注 Starred only"));
  form.append(check);

  const status = element("p", { id: "search-status", role: "status" });
  const list = element("ol", { id: "search-results", class: "search-results" });
  mount.append(form, status, list);
  mount.closest("#search-section")?.removeAttribute("hidden");

  let asked = 0;
  const run = async () => {
    const ask = ++asked;
    const term = query.value.trim();
    const filters = {};
    if (category.value) filters.category = category.value;
    if (starred.checked) filters.starred = "重点关注";
    if (!term) {
      list.replaceChildren();
      status.textContent = "";
      mount.dataset.done = String(ask);
      return;
    }
    const options = { filters };
    if (sort.value) options.sort = { date: "desc" };
    const search = await pagefind.search(term, options);
    const found = await Promise.all(search.results.slice(0, SHOWN).map((r) => r.data()));
    if (ask !== asked) return; // a newer query is under way
    list.replaceChildren(...found.map((data) => result(data, root)));
    const total = search.results.length;
    status.textContent = total === 0
      ? "没有结果 No results"
      : `${total} 篇论文 ${total === 1 ? "paper" : "papers"}` +
        (total > SHOWN ? `, 显示前 ${SHOWN} 篇 showing the first ${SHOWN}` : "");
    // Which search the list shows, for whoever waits for it (the tests).
    mount.dataset.done = String(ask);
  };
  let timer = 0;
  query.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(run, 150);
  });
  for (const control of [category, sort, starred]) control.addEventListener("change", run);
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
