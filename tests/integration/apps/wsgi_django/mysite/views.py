"""The project's own views: a contact form (CSRF-protected), a file upload, a plain page."""

import hashlib
import os

from django import forms
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


class ContactForm(forms.Form):
    name = forms.CharField(max_length=50)
    email = forms.EmailField()
    message = forms.CharField(widget=forms.Textarea)


class UploadForm(forms.Form):
    title = forms.CharField(max_length=100)
    file = forms.FileField()


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"hello from django, pid {os.getpid()}", content_type="text/plain")


def contact(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = ContactForm(request.POST)
        if form.is_valid():
            return JsonResponse({"received": form.cleaned_data})
        return render(request, "mysite/form.html", {"form": form}, status=400)
    return render(request, "mysite/form.html", {"form": ContactForm()})


def upload(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            sent = form.cleaned_data["file"]
            digest = hashlib.sha256()
            for chunk in sent.chunks():
                digest.update(chunk)
            return JsonResponse(
                {
                    "title": form.cleaned_data["title"],
                    "name": sent.name,
                    "size": sent.size,
                    "sha256": digest.hexdigest(),
                    "handler": type(sent).__name__,
                }
            )
        return render(request, "mysite/form.html", {"form": form}, status=400)
    return render(request, "mysite/form.html", {"form": UploadForm(), "multipart": True})
