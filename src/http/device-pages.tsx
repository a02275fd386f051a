/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/**
 * The pages a person sees when an app signs them in on another device (the
 * device authorization grant, RFC 8628) and when a third-party app asks for
 * their consent. Same layout and look as every other page (pages.tsx).
 * oidc-provider checks each form (its `xsrf` secret, the user code); these
 * components only render.
 */
import type { Child } from 'hono/jsx';
import { Layout, type PageFrame } from './pages.tsx';

/**
 * Yes and no, each its own small form to `action` with the same hidden
 * fields, told apart by one field (`name=value`): no script needed.
 */
function TwoChoices(props: { action: string; hidden: Child; yes: { label: string; field: [string, string] }; no: { label: string; field: [string, string] } }) {
  return (
    <div class="actions">
      {[props.yes, props.no].map((choice, index) => (
        <form method="post" action={props.action}>
          {props.hidden}
          <input type="hidden" name={choice.field[0]} value={choice.field[1]} />
          <button type="submit" class={index === 0 ? undefined : 'secondary'}>
            {choice.label}
          </button>
        </form>
      ))}
    </div>
  );
}

/** What went wrong with a code the person typed, as the input page says it. */
export interface CodeProblem {
  title: string;
  line: string;
}

/**
 * Step 1: the code the device shows. Prefilled when the person followed
 * the device's `verification_uri_complete`; nothing happens until they press
 * Continue, so a link alone starts nothing.
 */
export function DeviceCodePage(props: { frame: PageFrame; action: string; xsrf: string; userCode: string | undefined; problem: CodeProblem | undefined }) {
  const title = props.problem?.title ?? 'Connect a device';
  return (
    <Layout title={title} frame={props.frame}>
      <h1>{title}</h1>
      {props.problem ? (
        <p class="error" role="alert" id="code-problem">
          {props.problem.line}
        </p>
      ) : (
        <p id="code-help">Enter the code shown on your device or in your terminal.</p>
      )}
      <form method="post" action={props.action}>
        <input type="hidden" name="xsrf" value={props.xsrf} />
        <label for="user-code">Code</label>
        <input
          id="user-code"
          name="user_code"
          type="text"
          value={props.userCode}
          required
          autocomplete="off"
          autocapitalize="characters"
          spellcheck={false}
          autofocus={props.userCode === undefined || props.problem !== undefined ? true : undefined}
          placeholder="ABCD-EFGH"
          aria-describedby={props.problem ? 'code-problem' : 'code-help'}
          aria-invalid={props.problem ? 'true' : undefined}
        />
        <button type="submit">Continue</button>
      </form>
    </Layout>
  );
}

/** A code form posted without this browser's session (another browser, or long ago): nothing happened. */
export function DeviceRestartPage(props: { frame: PageFrame; href: string }) {
  return (
    <Layout title="Please enter the code again" frame={props.frame}>
      <h1>Please enter the code again</h1>
      <p>This form was opened in another browser, or too long ago, so nothing happened.</p>
      <p>
        <a class="button" href={props.href}>
          Enter the code
        </a>
      </p>
    </Layout>
  );
}

/**
 * Step 2: which app asks, and the code again to compare with the device's.
 * Continue goes on to sign in; Cancel tells the device no.
 */
export function DeviceConfirmPage(props: { frame: PageFrame; action: string; xsrf: string; userCode: string; appName: string }) {
  const hidden = (
    <>
      <input type="hidden" name="xsrf" value={props.xsrf} />
      <input type="hidden" name="user_code" value={props.userCode} />
    </>
  );
  return (
    <Layout title={`Sign in to ${props.appName} on your device?`} frame={props.frame}>
      <h1>Sign in to {props.appName} on your device?</h1>
      <p>Check that your device shows this code:</p>
      <p class="code" aria-label={`Code: ${props.userCode.split('').join(' ')}`}>
        {props.userCode}
      </p>
      <p class="muted">Only continue if you started this sign-in yourself and the codes match. If someone sent you here, press Cancel.</p>
      <TwoChoices action={props.action} hidden={hidden} yes={{ label: 'Continue', field: ['confirm', 'yes'] }} no={{ label: 'Cancel', field: ['abort', 'yes'] }} />
    </Layout>
  );
}

/** Step 4, after the chooser and the provider's sign-in: the device has its tokens. */
export function DeviceDonePage(props: { frame: PageFrame; appName: string }) {
  return (
    <Layout title="Device connected" frame={props.frame}>
      <h1>Device connected</h1>
      <p>
        You are signed in to <strong>{props.appName}</strong> on your device.
      </p>
      <p class="muted">You can close this tab and go back to your device.</p>
    </Layout>
  );
}

/**
 * A third-party app asks to know who the person is: its name, what it will
 * receive, and Allow or Deny. Both post the interaction's token (bound to
 * this interaction, checked with the interaction cookie).
 */
export function ConsentPage(props: { frame: PageFrame; action: string; csrf: string; appName: string; operator: string | undefined; access: readonly string[] }) {
  return (
    <Layout title={`Allow ${props.appName} to sign you in?`} frame={props.frame}>
      <h1>Allow {props.appName} to sign you in?</h1>
      <p>
        <strong>{props.appName}</strong> will receive:
      </p>
      <ul class="access">
        {props.access.map((line) => (
          <li>{line}</li>
        ))}
      </ul>
      <p class="muted">{props.appName} is not run by {props.operator ?? 'this sign-in service'}. Only allow it if you trust it.</p>
      <TwoChoices action={props.action} hidden={<input type="hidden" name="csrf" value={props.csrf} />} yes={{ label: 'Allow', field: ['decision', 'allow'] }} no={{ label: 'Deny', field: ['decision', 'deny'] }} />
    </Layout>
  );
}
