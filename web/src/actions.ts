// Runs what a button asks for: the button is busy meanwhile, the outcome is shown, and the
// model is refreshed so the change appears at once.

import { toast } from "./dom";
import { refresh } from "./model";

export async function act(
  button: HTMLButtonElement | null,
  what: () => Promise<unknown>,
  done?: (result: unknown) => string,
): Promise<boolean> {
  if (button) button.disabled = true;
  try {
    const result = await what();
    if (done) toast(done(result));
    await refresh();
    return true;
  } catch (e) {
    toast(e instanceof Error ? e.message : String(e), "bad");
    return false;
  } finally {
    if (button) button.disabled = false;
  }
}
