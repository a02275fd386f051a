CREATE TABLE "audit_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"tenant" text,
	"actor_kind" text NOT NULL,
	"actor_id" text,
	"action" text NOT NULL,
	"target" text,
	"outcome" text NOT NULL,
	"code" text,
	"client_address" text,
	"user_agent" text,
	"detail" jsonb
);
--> statement-breakpoint
CREATE TABLE "link_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tenant" text NOT NULL,
	"user_id" text NOT NULL,
	"provider" text NOT NULL,
	"kind" text NOT NULL,
	"at" timestamp with time zone NOT NULL,
	"count" integer DEFAULT 1 NOT NULL,
	"detail" jsonb
);
--> statement-breakpoint
CREATE INDEX "audit_events_at_idx" ON "audit_events" USING btree ("at");--> statement-breakpoint
CREATE INDEX "audit_events_tenant_at_idx" ON "audit_events" USING btree ("tenant","at");--> statement-breakpoint
CREATE INDEX "link_events_link_idx" ON "link_events" USING btree ("tenant","user_id","provider","at");--> statement-breakpoint
CREATE INDEX "link_events_at_idx" ON "link_events" USING btree ("at");--> statement-breakpoint
CREATE UNIQUE INDEX "link_events_served_idx" ON "link_events" USING btree ("tenant","user_id","provider","at") WHERE kind = 'token_served';