// Refreshes the run's figures every two seconds while the page is open; reloads the page
// when the run moves on to another phase (e.g. the pool was approved), unless you are typing.
(function () {
  const body = document.body;
  async function refresh() {
    let progress;
    try {
      const reply = await fetch("/api/progress", { cache: "no-store" });
      if (!reply.ok) return;
      progress = await reply.json();
    } catch (err) {
      return; // the server stopped: keep what is shown
    }
    for (const el of document.querySelectorAll("[data-progress]")) {
      let value = progress;
      for (const key of el.dataset.progress.split(".")) value = value == null ? null : value[key];
      el.textContent = typeof value === "number" ? value.toLocaleString("en") : value ?? 0;
    }
    const typing = document.activeElement && ["INPUT", "TEXTAREA", "SELECT"].includes(
      document.activeElement.tagName);
    const moved = (body.dataset.pool && body.dataset.pool !== progress.pool) ||
      (body.dataset.prepare && body.dataset.prepare !== progress.prepare);
    if (moved && !typing && document.querySelector("#pool")) location.reload();
  }
  setInterval(refresh, 2000);
})();
