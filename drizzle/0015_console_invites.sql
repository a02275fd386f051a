CREATE TABLE "console_invites" (
	"id_hash" text PRIMARY KEY NOT NULL,
	"created_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"used_at" timestamp with time zone,
	"used_by" text
);
--> statement-breakpoint
CREATE INDEX "console_invites_used_by_idx" ON "console_invites" USING btree ("used_by");