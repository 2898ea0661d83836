// Fill one field of a deployment's Custom run form in the real Prefect UI and submit it.
//   node tests/ui/custom_run.mjs <ui-url> <deployment-id> <field label> <type button> <value> <screenshot>
// Selectors follow what an operator sees: the field's label, its type toggle ("int" instead of
// "None"), its input, the Submit button.
import { chromium } from "playwright-core";

const [uiUrl, deploymentId, label, typeButton, value, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1200 } });
  page.setDefaultTimeout(60000);
  await page.goto(`${uiUrl}/deployments/deployment/${deploymentId}/run`);
  const field = page.locator(
    `xpath=//span[contains(@class,'schema-form-property__label') and ` +
    `starts-with(normalize-space(), '${label} ')]` +
    `/ancestor::div[contains(concat(' ', @class, ' '), ' schema-form-property ')][1]`
  );
  await field.getByRole("button", { name: typeButton, exact: true }).click();
  await field.locator("input").fill(value);
  await field.screenshot({ path: screenshot });
  await page.getByRole("button", { name: "Submit" }).click();
  // The UI leaves the form for the deployment's page once the run is created.
  try {
    await page.waitForURL((url) => !url.pathname.endsWith("/run"), { waitUntil: "commit" });
  } catch (error) {
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-failed.png"), fullPage: true });
    throw error;
  }
} finally {
  await browser.close();
}
