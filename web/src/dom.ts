// A few helpers for building the DOM by hand.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, unknown>;

// h("a", {href: "/x", class: "link", onclick: f}, "text", child, ...)
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Attrs | null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v as EventListener);
    } else if (k === "dataset") {
      Object.assign(el.dataset, v);
    } else if (k in el && k !== "list" && typeof v !== "string") {
      (el as unknown as Record<string, unknown>)[k] = v;
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el: Node, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
}

export function replace(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, children);
}

// Sets text only when it changed (keeps selections and avoids layout work).
export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

export function pill(text: string, tone: string, title?: string): HTMLSpanElement {
  return h("span", { class: `pill tone-${tone}`, title }, text);
}

export function link(href: string, ...children: Child[]): HTMLAnchorElement {
  return h("a", { href, "data-nav": "" }, ...children);
}

// A table whose rows are kept by key: a row and its cells are updated in place, so buttons,
// focus and selections survive a refresh.
export interface Column<T> {
  title: string;
  class?: string;
  // What the cell shows; a cell is redrawn only when its `key` (default: the text) changes.
  render: (row: T) => Child | Child[];
  key?: (row: T) => string;
}

export class KeyedTable<T> {
  readonly element: HTMLTableElement;
  private readonly body: HTMLTableSectionElement;
  private readonly rows = new Map<string, { tr: HTMLTableRowElement; keys: string[] }>();
  private readonly empty: HTMLTableRowElement;

  constructor(
    private readonly columns: Column<T>[],
    private readonly rowKey: (row: T) => string,
    emptyText: string,
    private readonly rowClass?: (row: T) => string,
  ) {
    this.body = h("tbody");
    this.empty = h("tr", { class: "empty" }, h("td", { colSpan: columns.length }, emptyText));
    this.element = h(
      "table",
      { class: "grid" },
      h("thead", null, h("tr", null, columns.map((c) => h("th", { class: c.class }, c.title)))),
      this.body,
    );
  }

  update(items: T[]): void {
    const seen = new Set<string>();
    let prev: Element | null = null;
    for (const item of items) {
      const k = this.rowKey(item);
      seen.add(k);
      let row = this.rows.get(k);
      if (!row) {
        const tr = h("tr", { dataset: { key: k } });
        for (const c of this.columns) tr.appendChild(h("td", { class: c.class }));
        row = { tr, keys: this.columns.map(() => "\u0000") };
        this.rows.set(k, row);
      }
      this.columns.forEach((c, i) => {
        const rendered = c.render(item);
        const key = c.key ? c.key(item) : textOf(rendered);
        if (row!.keys[i] === key) return;
        row!.keys[i] = key;
        replace(row!.tr.children[i], rendered);
      });
      if (this.rowClass) row.tr.className = this.rowClass(item);
      const want: Element | null = prev ? prev.nextElementSibling : this.body.firstElementChild;
      if (want !== row.tr) this.body.insertBefore(row.tr, want);
      prev = row.tr;
    }
    for (const [k, row] of this.rows) {
      if (!seen.has(k)) {
        row.tr.remove();
        this.rows.delete(k);
      }
    }
    if (items.length === 0) this.body.replaceChildren(this.empty);
    else this.empty.remove();
  }
}

function textOf(c: Child | Child[]): string {
  if (Array.isArray(c)) return c.map(textOf).join("\u0001");
  if (c === null || c === undefined || c === false) return "";
  if (typeof c === "object") return (c as Node).textContent ?? "";
  return String(c);
}

// A small message in the corner that goes away by itself.
export function toast(message: string, tone: "ok" | "bad" = "ok"): void {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts", role: "status", "aria-live": "polite" });
    document.body.appendChild(box);
  }
  const t = h("div", { class: `toast tone-${tone}` }, message);
  box.appendChild(t);
  while (box.children.length > 3) box.firstElementChild!.remove();
  window.setTimeout(() => t.remove(), tone === "bad" ? 8000 : 4000);
}
