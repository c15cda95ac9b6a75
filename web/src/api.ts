// Calls to the daemon's /v1 API, each with the token the user signed in with.

const TOKEN_KEY = "rota.token";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let token = sessionStorage.getItem(TOKEN_KEY) ?? "";
let onUnauthorized: () => void = () => {};

export function hasToken(): boolean {
  return token !== "";
}

export function setToken(value: string): void {
  token = value;
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Called when a call is refused with 401 (the token was changed, or the daemon's home).
export function whenUnauthorized(f: () => void): void {
  onUnauthorized = f;
}

export function authHeaders(): Record<string, string> {
  return { Authorization: `Bearer ${token}` };
}

async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text();
  try {
    const e = JSON.parse(text).error;
    return new ApiError(res.status, e.code ?? "error", e.message ?? text);
  } catch {
    return new ApiError(res.status, "error", text || `HTTP ${res.status}`);
  }
}

async function call(method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "unreachable", "the daemon does not answer");
  }
  if (res.status === 401) {
    const e = await errorOf(res);
    onUnauthorized();
    throw e;
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

export async function get<T>(path: string): Promise<T> {
  return (await (await call("GET", path)).json()) as T;
}

export async function getText(path: string): Promise<string> {
  return (await call("GET", path)).text();
}

export async function post<T>(path: string, body: unknown = {}): Promise<T> {
  return (await (await call("POST", path, body)).json()) as T;
}

// Checks a token without keeping it: the reply to /v1/info, or the error (401 for a wrong one).
export async function tryToken(candidate: string): Promise<void> {
  let res: Response;
  try {
    res = await fetch("/v1/info", { headers: { Authorization: `Bearer ${candidate}` }, cache: "no-store" });
  } catch {
    throw new ApiError(0, "unreachable", "the daemon does not answer");
  }
  if (!res.ok) throw await errorOf(res);
}
