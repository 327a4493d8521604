() => {
  // Clicking a cited time ([mm:ss] links made by app/links.py) seeks the player.
  // One delegated listener on the document: chat messages, the transcript and the found
  // moments are re-rendered all the time, so per-link handlers would be lost.
  // A link with data-video (a citation of an answer about several videos, [lecture2.mp4 03:10])
  // first switches the player to that video: it asks the page's hidden switch (app/library.py),
  // waits until #current-video names the video and the player has loaded it, then seeks.
  if (window.__videochatSeekInstalled) return;
  window.__videochatSeekInstalled = true;

  function player() {
    return document.querySelector("#player video");
  }

  function currentVideo() {
    const marker = document.querySelector("#current-video [data-video]");
    return marker ? marker.dataset.video : "";
  }

  window.videochatSeek = function (seconds) {
    const video = player();
    if (!video || !isFinite(seconds) || !(video.currentSrc || video.src)) return false;
    const go = () => {
      const end = isFinite(video.duration) ? video.duration : seconds;
      video.currentTime = Math.max(0, Math.min(seconds, end));
    };
    if (video.readyState >= 1) go();
    else video.addEventListener("loadedmetadata", go, { once: true });
    video.scrollIntoView({ block: "nearest", behavior: "smooth" });
    return true;
  };

  window.videochatSwitch = function (key, seconds) {
    const box = document.querySelector("#video-switch textarea, #video-switch input");
    const button = document.querySelector("#video-switch-go");
    if (!box || !button) return false;
    const before = player();
    const beforeSrc = before ? before.currentSrc || before.src : "";
    box.value = `${key}|${seconds}|${Date.now()}`;
    box.dispatchEvent(new Event("input", { bubbles: true }));
    button.click();
    const deadline = Date.now() + 60000;
    const wait = () => {
      const video = player();
      const src = video ? video.currentSrc || video.src : "";
      if (currentVideo() === key && video && src && src !== beforeSrc) {
        window.videochatSeek(seconds);
        return;
      }
      if (Date.now() < deadline) setTimeout(wait, 100);
    };
    setTimeout(wait, 100);
    return true;
  };

  document.addEventListener(
    "click",
    (event) => {
      const link = event.target.closest && event.target.closest("a.seek, a[href^='#t=']");
      if (!link) return;
      event.preventDefault();
      event.stopPropagation();
      const href = link.getAttribute("href") || "";
      const raw = link.dataset.seek ?? href.slice(3);
      const seconds = parseFloat(raw);
      // the chat drops data-* attributes: a cross-video link carries its video in the href ("#t=190&v=KEY")
      const key = link.dataset.video || (href.match(/[#&]v=([^&]+)/) || [])[1];
      if (key && key !== currentVideo()) {
        window.videochatSwitch(key, seconds);
      } else if (!window.videochatSeek(seconds) && key) {
        window.videochatSwitch(key, seconds); // the player is empty (a new video was started): load it again
      }
    },
    true, // capture: run before the chat's own link handling (which opens links in a new tab)
  );
}
