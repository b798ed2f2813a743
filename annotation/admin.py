from django.contrib import admin

from .models import IngestBatch, Item, LabelClass, Membership, Project


class LabelClassInline(admin.TabularInline):
    model = LabelClass
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "acquisition_strategy", "labels_per_item", "created_at"]
    search_fields = ["name"]
    inlines = [LabelClassInline, MembershipInline]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "external_id", "status", "embedding_state", "updated_at"]
    list_filter = ["status", "embedding_state"]
    search_fields = ["external_id"]
    raw_id_fields = ["project"]
    show_full_result_count = False


@admin.register(IngestBatch)
class IngestBatchAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "format",
        "status",
        "records",
        "created",
        "updated",
        "unchanged",
        "rejected",
        "created_at",
    ]
    list_filter = ["status", "format"]
