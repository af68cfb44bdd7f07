// The gallery's thumbnails play their video in place: a click (or Enter) on one swaps in a
// player that starts at once and takes the focus. Without this script the link opens the job.
(function () {
  'use strict';
  document.addEventListener('click', function (event) {
    var link = event.target instanceof Element ? event.target.closest('a.thumb[data-video]') : null;
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    var video = document.createElement('video');
    video.src = link.getAttribute('data-video');
    video.controls = true;
    video.autoplay = true;
    video.muted = true;
    video.playsInline = true;
    video.id = link.id.replace('thumb-', 'video-');
    video.setAttribute('aria-label', link.getAttribute('aria-label').replace('Play the video', 'Video'));
    link.replaceWith(video);
    video.focus();
  });
})();
