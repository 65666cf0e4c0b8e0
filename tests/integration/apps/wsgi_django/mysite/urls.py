"""URLs: the admin, a form with CSRF, a file upload, a plain page; /static/ while DEBUG."""

from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path

from mysite import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("hello/", views.hello),
    path("contact/", views.contact),
    path("upload/", views.upload),
    *staticfiles_urlpatterns(),  # only while DEBUG is on
]
