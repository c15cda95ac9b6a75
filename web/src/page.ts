// What every page gives the router.

export interface Page {
  title: string;
  element: HTMLElement;
  // Redraw from the model (called after every poll and event batch).
  update(): void;
  destroy?(): void;
  // What it shows that costs more to fetch: polled only while it is on show.
  needs?: ("stats" | "analysis")[];
}

export interface Route {
  params: string[]; // the :parts of the path
  query: URLSearchParams;
}

// Moves to another page of the dashboard without reloading it.
export function navigate(href: string, replace = false): void {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  window.dispatchEvent(new Event("rota:navigate"));
}
