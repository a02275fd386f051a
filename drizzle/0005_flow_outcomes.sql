ALTER TABLE "flows" ADD COLUMN "ended_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "flows_user_idx" ON "flows" USING btree ("tenant","user_id","provider");