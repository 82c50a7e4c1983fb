// The approval app's service worker: shows pushes, closes withdrawn ones, opens the approval
// page when a notification is tapped (iOS shows no action buttons, so deciding happens there).
'use strict';
const SHELL = ['/app/', '/app/app.css', '/app/app.js', '/app/owner.js', '/app/manifest.webmanifest', '/app/icon-192.png'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open('shell-v1').then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});
self.addEventListener('activate', (event) => { event.waitUntil(self.clients.claim()); });

// The shell works offline; the API never comes from a cache.
self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || !url.pathname.startsWith('/app/')) return;
  event.respondWith(fetch(event.request).catch(() => caches.match(event.request)));
});

self.addEventListener('push', (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = {}; }
  if (data.type === 'withdrawn') {
    event.waitUntil(self.registration.getNotifications({ tag: data.id })
      .then((list) => list.forEach((n) => n.close())));
    return;
  }
  const urgent = data.tier === 'red' || data.tier === 'critical';
  event.waitUntil(self.registration.showNotification(data.title || 'Approval needed', {
    // A credential is named as SECRET_REF(name) (never its value); a notification shows the name.
    body: (data.summary || 'Your agent is waiting for a decision.').replace(/SECRET_REF\(([A-Za-z0-9_.-]{1,64})\)/g, '“$1”'),
    tag: data.id, renotify: true, requireInteraction: urgent,
    icon: '/app/icon-192.png', badge: '/app/icon-192.png',
    data: { url: data.url || '/app/' },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = new URL((event.notification.data && event.notification.data.url) || '/app/', self.location.origin).href;
  event.waitUntil(self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then((wins) => {
    for (const w of wins) {
      if (new URL(w.url).pathname.startsWith('/app/')) { return w.navigate(url).then((c) => (c || w).focus()); }
    }
    return self.clients.openWindow(url);
  }));
});
