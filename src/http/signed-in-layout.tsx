/** @jsxRuntime automatic @jsxImportSource hono/jsx */
/**
 * The pieces of the gateway's signed-in pages (the admin console; the account
 * page can use them too): a wider frame with who is signed in, a sign-out
 * button and a navigation bar; forms that carry the session's CSRF token
 * (src/http/cookie-session.ts); tables that scroll on a phone.
 */
import type { Child } from 'hono/jsx';
import { FORM_TOKEN_FIELD, newFormToken } from '../core/form-tokens.ts';
import { Layout, type PageFrame } from './pages.tsx';

const STYLE = `
main.wide { max-width: 68rem; margin: 1rem auto; }
nav.top { display: flex; flex-wrap: wrap; gap: .25rem 1rem; align-items: center; border-bottom: 1px solid var(--muted); padding-bottom: .75rem; margin-bottom: 1rem; }
nav.top a { font-weight: 600; padding: .5rem .25rem; }
nav.top a[aria-current="page"] { text-decoration: none; color: var(--fg); border-bottom: 3px solid var(--accent); }
.who { margin-left: auto; display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; color: var(--muted); font-size: .95rem; }
.who form button { margin: 0; padding: .4rem .8rem; }
nav.sub { display: flex; flex-wrap: wrap; gap: .25rem 1rem; margin: 0 0 1rem; }
nav.sub a { padding: .4rem .1rem; }
nav.sub a[aria-current="page"] { font-weight: 700; text-decoration: none; color: var(--fg); }
h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
.table { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; width: 100%; font-size: .95rem; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid color-mix(in srgb, var(--muted) 40%, transparent); vertical-align: top; }
th { font-weight: 600; white-space: nowrap; }
td form, td button { margin: 0; }
td button { padding: .35rem .8rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1rem; margin: .5rem 0 1rem; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.once { border: 2px solid var(--accent); border-radius: .5rem; padding: .75rem 1rem; margin: 1rem 0; }
.once code { font-size: 1.05rem; }
form.inline { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: flex-end; }
form.inline label { margin-top: 0; }
form.inline input, form.inline select { width: auto; min-width: 12rem; }
select, textarea { font: inherit; padding: .55rem; margin-top: .25rem; border: 1px solid var(--muted); border-radius: .4rem; background: var(--bg); color: var(--fg); }
textarea { width: 100%; min-height: 6rem; }
button.danger { background: var(--bad); color: var(--card); }
.badge { display: inline-block; padding: 0 .5rem; border-radius: 1rem; border: 1px solid var(--muted); font-size: .85rem; }
`;

export interface NavItem {
  href: string;
  label: string;
  current?: boolean;
}

export interface SignedInProps {
  title: string;
  frame: PageFrame;
  /** Who is signed in, in words (`discord:80351110224678912 · owner`). */
  who: string;
  signOutAction: string;
  csrf: string;
  nav: NavItem[];
  /** A second row of links (a tenant's sections). */
  subnav?: NavItem[] | undefined;
  children: Child;
}

export function SignedInLayout(props: SignedInProps) {
  return (
    <Layout title={props.title} frame={props.frame} wide style={STYLE}>
      <nav class="top" aria-label="Main">
        {props.nav.map((item) => (
          <a href={item.href} aria-current={item.current ? 'page' : undefined}>
            {item.label}
          </a>
        ))}
        <div class="who">
          <span id="signed-in-as">{props.who}</span>
          <PostButton action={props.signOutAction} csrf={props.csrf} label="Sign out" secondary />
        </div>
      </nav>
      {props.subnav ? (
        <nav class="sub" aria-label="Section">
          {props.subnav.map((item) => (
            <a href={item.href} aria-current={item.current ? 'page' : undefined}>
              {item.label}
            </a>
          ))}
        </nav>
      ) : null}
      {props.children}
    </Layout>
  );
}

/** The session's CSRF token, in every form that changes something. */
export const CsrfField = (props: { csrf: string }) => <input type="hidden" name="csrf" value={props.csrf} />;

/**
 * A new one-time token (src/core/form-tokens.ts), in a form that makes
 * something shown once: sent again, the form makes nothing.
 */
export const OnceField = () => <input type="hidden" name={FORM_TOKEN_FIELD} value={newFormToken()} />;

/** A one-button form: an action on one thing (revoke, retry, unlink); `once` for one that makes something shown once. */
export function PostButton(props: { action: string; csrf: string; label: string; secondary?: boolean; danger?: boolean; fields?: Record<string, string>; describedBy?: string; once?: boolean }) {
  return (
    <form method="post" action={props.action}>
      <CsrfField csrf={props.csrf} />
      {props.once ? <OnceField /> : null}
      {Object.entries(props.fields ?? {}).map(([name, value]) => (
        <input type="hidden" name={name} value={value} />
      ))}
      <button type="submit" class={props.danger ? 'danger' : props.secondary ? 'secondary' : undefined} aria-describedby={props.describedBy}>
        {props.label}
      </button>
    </form>
  );
}

/** A table in a box that scrolls sideways on a narrow screen (focusable, so a keyboard can scroll it). */
export function Table(props: { label: string; head: string[]; children: Child; empty?: string | undefined; rows: number }) {
  if (props.rows === 0) return <p class="muted">{props.empty ?? 'Nothing here yet.'}</p>;
  return (
    <div class="table" role="region" aria-label={props.label} tabindex={0}>
      <table>
        <thead>
          <tr>
            {props.head.map((name) => (
              <th scope="col">{name}</th>
            ))}
          </tr>
        </thead>
        <tbody>{props.children}</tbody>
      </table>
    </div>
  );
}

/** A value shown once (a new key or secret): it is not stored in a form we could show again. */
export function ShownOnce(props: { label: string; value: string; id: string }) {
  return (
    <div class="once" role="status">
      <p>
        <strong>{props.label}</strong> — copy it now: it is shown only this once.
      </p>
      <p>
        <code id={props.id}>{props.value}</code>
      </p>
    </div>
  );
}

/** A time as people read it, in UTC; `—` for none. */
export const when = (date: Date | null | undefined): string => (date ? `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC` : '—');
