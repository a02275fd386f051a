CREATE TABLE "console_form_tokens" (
	"token_hash" text PRIMARY KEY NOT NULL,
	"made" text,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX "console_form_tokens_expires_at_idx" ON "console_form_tokens" USING btree ("expires_at");