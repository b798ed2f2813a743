"""Domain errors raised by the services of every app. The API turns them into 4xx responses
(``quorum.web.exception_handler``); the pages into messages or 4xx pages."""


class ServiceError(Exception):
    """A request that breaks a rule of the domain. ``detail`` says what and where."""

    status_code = 400

    def __init__(self, detail: str | dict, *, code: str = "invalid"):
        super().__init__(detail)
        self.detail = detail
        self.code = code


class PermissionDenied(ServiceError):
    status_code = 403


class Conflict(ServiceError):
    status_code = 409


class NotFound(ServiceError):
    status_code = 404
