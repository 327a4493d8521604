() => {
  // Clicking a cited time ([mm:ss] links made by app/links.py) seeks the player.
  // One delegated listener on the document: chat messages, the transcript and the found
  // moments are re-rendered all the time, so per-link handlers would be lost.
  if (window.__videochatSeekInstalled) return;
  window.__videochatSeekInstalled = true;

  function player() {
    return document.querySelector("#player video");
  }

  window.videochatSeek = function (seconds) {
    const video = player();
    if (!video || !isFinite(seconds)) return false;
    const go = () => {
      const end = isFinite(video.duration) ? video.duration : seconds;
      video.currentTime = Math.max(0, Math.min(seconds, end));
    };
    if (video.readyState >= 1) go();
    else video.addEventListener("loadedmetadata", go, { once: true });
    video.scrollIntoView({ block: "nearest", behavior: "smooth" });
    return true;
  };

  document.addEventListener(
    "click",
    (event) => {
      const link = event.target.closest && event.target.closest("a.seek, a[href^='#t=']");
      if (!link) return;
      event.preventDefault();
      event.stopPropagation();
      const raw = link.dataset.seek ?? link.getAttribute("href").slice(3);
      window.videochatSeek(parseFloat(raw));
    },
    true, // capture: run before the chat's own link handling (which opens links in a new tab)
  );
}
