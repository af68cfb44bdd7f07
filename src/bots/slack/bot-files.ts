/**
 * A picture uploaded as a file of the bot's own, shared into no channel (files.uploadV2 without a
 * channel: files.getUploadURLExternal + files.completeUploadExternal), so that a message can show
 * it in an image block by its `slack_file` id: live previews and `/reelbot history`'s thumbnails.
 */
import type { App } from '@slack/bolt';

/** Uploads the bytes and returns the new file's id; throws when Slack refuses the upload. */
export async function uploadBotImage(client: App['client'], file: Buffer, filename: string, title: string): Promise<string> {
  const response = await client.files.uploadV2({ file, filename, title });
  const fileId = (response as { files?: { files?: { id?: string }[] }[] }).files?.[0]?.files?.[0]?.id;
  if (fileId === undefined) throw new Error('files.uploadV2 returned no file id');
  return fileId;
}
